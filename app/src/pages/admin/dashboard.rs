//! The dashboard: lockers online and offline, opens today, failures in
//! the last hour, and opens per minute over the last hour (opened against
//! failed) drawn as a small SVG chart; all live from the tenant's lockers
//! and open-requests channels.

use leptos::prelude::*;

use crate::realtime::LiveResource;
use serde::{Deserialize, Serialize};

use super::{failure, Followed, PageTitle};
use crate::{error::AppError, realtime::use_live_refetch};

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Minute {
    pub minute: i64,
    pub opened: i64,
    pub failed: i64,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DashboardData {
    pub online: i64,
    pub offline: i64,
    /// Registered but never heard from.
    pub silent: i64,
    pub opened_today: i64,
    pub failed_last_hour: i64,
    pub per_minute: Vec<Minute>,
    pub lockers: Followed,
    pub opens: Followed,
}

#[server(prefix = "/sfn", endpoint = "admin_dashboard", output = crate::codec::Json)]
pub async fn admin_dashboard() -> Result<DashboardData, AppError> {
    use crate::auth::ssr;
    use lockstep_core::{
        eventstore::channels::Channel, identity::tokens::Ability, lockers, now_ms, opens,
    };
    let principal = ssr::require(Ability::LockerRead).await?;
    let tenant = principal.user().tenant_id;
    let services = ssr::services()?;
    // The heads first: whatever changes after them reaches the page.
    let lockers_ch = super::followed(&services, Channel::TenantLockers(tenant)).await?;
    let opens_ch = super::followed(&services, Channel::TenantOpenRequests(tenant)).await?;
    let banks = lockers::list_banks(&services, tenant).await?;
    let count = |v: Option<bool>| banks.iter().filter(|b| b.online == v).count() as i64;
    let stats = opens::dashboard_stats(&services, tenant, now_ms()).await?;
    Ok(DashboardData {
        online: count(Some(true)),
        offline: count(Some(false)),
        silent: count(None),
        opened_today: stats.opened_today,
        failed_last_hour: stats.failed_last_hour,
        per_minute: stats
            .per_minute
            .into_iter()
            .map(|m| Minute {
                minute: m.minute,
                opened: m.opened,
                failed: m.failed,
            })
            .collect(),
        lockers: lockers_ch,
        opens: opens_ch,
    })
}

#[component]
pub fn Dashboard() -> impl IntoView {
    crate::pages::common::mark_hydrated();
    let data = LiveResource::new(|| (), |_| admin_dashboard());
    let live = use_live_refetch(move || data.refetch());
    // The chart's minutes move on even when nothing happens.
    Effect::new(move |_| {
        if let Ok(h) =
            set_interval_with_handle(move || data.refetch(), std::time::Duration::from_secs(30))
        {
            on_cleanup(move || h.clear());
        }
    });
    view! {
        <PageTitle title="Dashboard" lead="Your fleet right now."/>
        <Transition fallback=|| view! { <p class="mt-6 text-sm text-slate-600">"Loading…"</p> }>
            {move || Suspend::new(async move {
                match data.read().await {
                    Ok(d) => {
                        live.follow(&[(&d.lockers.channel, d.lockers.seq), (&d.opens.channel, d.opens.seq)]);
                        view! { <div data-testid="admin-dashboard"><Figures d/></div> }.into_any()
                    }
                    Err(e) => failure(e),
                }
            })}
        </Transition>
    }
}

#[component]
fn Stat(
    #[prop(into)] label: String,
    value: i64,
    #[prop(into)] testid: String,
    #[prop(optional)] tone: &'static str,
) -> impl IntoView {
    view! {
        <div class="rounded-xl border border-slate-200 bg-white p-4">
            <p class="text-sm text-slate-600">{label}</p>
            <p class=format!("mt-1 text-3xl font-semibold tabular-nums {tone}") data-testid=testid data-value=value>
                {value}
            </p>
        </div>
    }
}

#[component]
fn Figures(d: DashboardData) -> impl IntoView {
    let opened_hour: i64 = d.per_minute.iter().map(|m| m.opened).sum();
    let failed_hour: i64 = d.per_minute.iter().map(|m| m.failed).sum();
    view! {
        <section aria-label="Figures" class="mt-6 grid grid-cols-2 gap-3 lg:grid-cols-4">
            <Stat label="Lockers online" value=d.online testid="stat-online" tone="text-emerald-700"/>
            <Stat label="Lockers offline" value=d.offline + d.silent testid="stat-offline" tone="text-slate-900"/>
            <Stat label="Opens today" value=d.opened_today testid="stat-opened-today"/>
            <Stat label="Failures, last hour" value=d.failed_last_hour testid="stat-failed-hour" tone="text-red-700"/>
        </section>
        <section class="mt-6 rounded-xl border border-slate-200 bg-white p-4">
            <h2 class="font-semibold">"Opens per minute, last hour"</h2>
            <p class="text-sm text-slate-600">
                {format!("{opened_hour} opened, {failed_hour} failed")}
            </p>
            <Chart minutes=d.per_minute/>
            <p class="mt-2 flex gap-4 text-xs text-slate-600">
                <span class="inline-flex items-center gap-1">
                    <span class="h-2 w-2 rounded-sm bg-emerald-600" aria-hidden="true"></span>
                    "opened"
                </span>
                <span class="inline-flex items-center gap-1">
                    <span class="h-2 w-2 rounded-sm bg-red-600" aria-hidden="true"></span>
                    "failed"
                </span>
            </p>
        </section>
    }
}

/// 60 stacked bars (opened below, failed on top), server-rendered SVG.
///
/// Coordinates are whole numbers on a 6000 × 1200 grid (the SVG stretches
/// it): formatting floats would add the float printer to the wasm.
#[component]
fn Chart(minutes: Vec<Minute>) -> impl IntoView {
    const W: i64 = 6000;
    const H: i64 = 1200;
    let peak = minutes
        .iter()
        .map(|m| m.opened + m.failed)
        .max()
        .unwrap_or(0)
        .max(1);
    let slot = W / (minutes.len().max(1) as i64);
    let opened: i64 = minutes.iter().map(|m| m.opened).sum();
    let failed: i64 = minutes.iter().map(|m| m.failed).sum();
    let label = format!(
        "Bar chart: {opened} opened and {failed} failed over the last 60 minutes; at most {peak} in one minute."
    );
    let bars = minutes
        .into_iter()
        .enumerate()
        .map(|(i, m)| {
            let x = i as i64 * slot + 10;
            let w = (slot - 20).max(10);
            let ho = m.opened * (H - 40) / peak;
            let hf = m.failed * (H - 40) / peak;
            view! {
                <g>
                    <title>{format!("{} opened, {} failed", m.opened, m.failed)}</title>
                    <rect x=x y=H - ho width=w height=ho class="fill-emerald-600"></rect>
                    <rect x=x y=H - ho - hf width=w height=hf class="fill-red-600"></rect>
                </g>
            }
        })
        .collect_view();
    view! {
        <svg
            viewBox=format!("0 0 {W} {H}")
            class="mt-3 h-32 w-full"
            role="img"
            aria-label=label
            preserveAspectRatio="none"
            data-testid="opens-chart"
            data-opened=opened
            data-failed=failed
        >
            <line x1="0" y1=H x2=W y2=H class="stroke-slate-300" stroke-width="10"></line>
            {bars}
        </svg>
    }
}
