//! A table's live refresh. Changes on its list channel accumulate and
//! cause **one** refresh a moment later (the throttle: 3 s by default,
//! `LOCKSTEP_TABLE_REFRESH_MS`, which the shell passes in
//! `<meta name="lockstep-table-refresh-ms">`). Nothing refreshes while
//! the table is paused (WCAG 2.2.2: the person stops the movement) or
//! while a row is edited inline; the table then says how many rows
//! changed. The page renders its rows keyed, so a refresh replaces only
//! the rows that changed, and scroll, selection, filters and focus stay.

use leptos::prelude::*;

use super::{Delivery, LiveRefetch};

/// The throttle when the page does not say.
pub const DEFAULT_REFRESH_MS: u64 = 3000;

/// The throttle the server configured, which it provides as context; the
/// shell puts it in `<meta name="lockstep-table-refresh-ms">`.
#[derive(Clone, Copy, Debug)]
pub struct RefreshMs(pub u64);
/// How long the rows a refresh changed stay highlighted.
pub const FLASH_MS: u64 = 2000;

/// The table's live state (a cheap `Copy` handle).
#[derive(Clone, Copy)]
pub struct TableSync {
    /// Changes heard since the last refresh.
    pub waiting: RwSignal<usize>,
    /// The rows (subject ids) those changes touched.
    pub rows: RwSignal<Vec<String>>,
    /// The rows the last refresh brought changes to (highlighted briefly).
    pub flash: RwSignal<Vec<String>>,
    pub paused: RwSignal<bool>,
    /// A row is being edited inline.
    pub editing: RwSignal<bool>,
    /// The number of changed rows when "Keep editing" was chosen: the
    /// prompt shows again once more arrive.
    pub kept_at: RwSignal<usize>,
    /// Refreshes made (the table shows it in `data-refreshes`).
    pub refreshes: RwSignal<u32>,
    scheduled: StoredValue<bool>,
    refresh: StoredValue<Option<std::sync::Arc<dyn Fn() + Send + Sync>>>,
}

/// Call at the table's top level with what refreshes its rows; follow the
/// list channel with the returned [`LiveRefetch`] once its data is read.
pub fn use_table_sync(refresh: impl Fn() + Send + Sync + 'static) -> (TableSync, LiveRefetch) {
    let sync = TableSync {
        waiting: RwSignal::new(0),
        rows: RwSignal::new(Vec::new()),
        flash: RwSignal::new(Vec::new()),
        paused: RwSignal::new(false),
        editing: RwSignal::new(false),
        kept_at: RwSignal::new(0),
        refreshes: RwSignal::new(0),
        scheduled: StoredValue::new(false),
        refresh: StoredValue::new(Some(std::sync::Arc::new(refresh))),
    };
    let live = super::use_deliveries(move |d| sync.heard(d));
    (sync, live)
}

/// The throttle the server configured.
fn throttle() -> std::time::Duration {
    #[cfg(feature = "hydrate")]
    let ms = document()
        .query_selector("meta[name=lockstep-table-refresh-ms]")
        .ok()
        .flatten()
        .and_then(|m| m.get_attribute("content"))
        .and_then(|v| v.parse().ok())
        .unwrap_or(DEFAULT_REFRESH_MS);
    #[cfg(not(feature = "hydrate"))]
    let ms = DEFAULT_REFRESH_MS;
    std::time::Duration::from_millis(ms)
}

impl TableSync {
    fn heard(&self, delivery: &Delivery) {
        let row = match delivery {
            Delivery::Envelope(e) => e.subject.id.to_string(),
            Delivery::Reset => String::new(),
        };
        self.waiting.update(|n| *n += 1);
        self.rows.update(|r| {
            if !row.is_empty() && !r.contains(&row) {
                r.push(row);
            }
        });
        self.schedule();
    }

    /// Arms the throttle, unless it is armed or the table holds still.
    fn schedule(&self) {
        if self.paused.get_untracked() || self.editing.get_untracked() {
            return;
        }
        if self
            .scheduled
            .try_update_value(|s| std::mem::replace(s, true))
            != Some(false)
        {
            return;
        }
        let this = *self;
        set_timeout(
            move || {
                this.scheduled.try_set_value(false);
                // The table may be gone (a disposed signal must not be
                // read), held, or refreshed meanwhile ("Reload now").
                let due = this.paused.try_get_untracked() == Some(false)
                    && this.editing.try_get_untracked() == Some(false)
                    && this.waiting.try_get_untracked().is_some_and(|n| n > 0);
                if due {
                    this.refresh_now();
                }
            },
            throttle(),
        );
    }

    /// Refreshes at once ("Reload now", resuming with changes waiting).
    pub fn refresh_now(&self) {
        let Some(Some(refresh)) = self.refresh.try_get_value() else {
            return;
        };
        if self.waiting.try_get_untracked().is_none() {
            return;
        }
        let changed = self.rows.try_update(std::mem::take).unwrap_or_default();
        self.waiting.set(0);
        self.kept_at.set(0);
        self.refreshes.update(|n| *n += 1);
        self.flash.set(changed);
        let flash = self.flash;
        set_timeout(
            move || {
                flash.try_set(Vec::new());
            },
            std::time::Duration::from_millis(FLASH_MS),
        );
        refresh();
    }

    pub fn toggle_pause(&self) {
        let paused = !self.paused.get_untracked();
        self.paused.set(paused);
        if !paused && self.waiting.get_untracked() > 0 && !self.editing.get_untracked() {
            self.refresh_now();
        }
    }

    /// An inline edit opened or closed; closing it refreshes if changes
    /// are waiting (after the throttle).
    pub fn set_editing(&self, editing: bool) {
        self.editing.set(editing);
        if !editing && self.waiting.get_untracked() > 0 {
            self.schedule();
        }
    }

    /// "Keep editing": the prompt hides until more rows change.
    pub fn keep_editing(&self) {
        self.kept_at.set(self.rows.with_untracked(Vec::len));
    }

    /// Whether the last refresh changed the row `id` (its highlight).
    pub fn flashed(&self, id: String) -> Signal<bool> {
        let flash = self.flash;
        Signal::derive(move || flash.with(|f| f.contains(&id)))
    }

    /// A row's classes: highlighted for a moment when a refresh changed it.
    pub fn row_class(flashed: Signal<bool>) -> &'static str {
        if flashed.get() {
            "border-t border-slate-100 bg-amber-50 transition-colors"
        } else {
            "border-t border-slate-100 transition-colors"
        }
    }

    /// Whether the "N rows changed" prompt shows.
    pub fn prompt(&self) -> bool {
        self.editing.get() && self.rows.with(Vec::len) > self.kept_at.get()
    }
}

/// The table's live controls: the pause toggle (with how many changes
/// wait) and, during an inline edit, the "N rows changed" prompt.
#[component]
pub fn TableLiveBar(sync: TableSync) -> impl IntoView {
    let label = move || {
        let n = sync.waiting.get();
        match (sync.paused.get(), n) {
            (true, 0) => "Resume live updates".to_string(),
            (true, n) => format!("Resume live updates ({n} waiting)"),
            (false, _) => "Pause live updates".to_string(),
        }
    };
    view! {
        <div class="mt-2 flex flex-wrap items-center gap-3 text-sm">
            <button type="button" data-testid="live-pause" aria-pressed=move || sync.paused.get().to_string()
                on:click=move |_| sync.toggle_pause()
                class="rounded-md border border-slate-300 bg-white px-3 py-1 text-slate-700 hover:bg-slate-50">
                {label}
            </button>
            <Show when=move || sync.prompt()>
                <p role="status" data-testid="rows-changed" class="flex items-center gap-2 rounded-md bg-amber-50 px-3 py-1 text-amber-900">
                    {move || {
                        let n = sync.rows.with(Vec::len);
                        format!("{n} row{} changed", if n == 1 { "" } else { "s" })
                    }}
                    <button type="button" data-testid="rows-reload" on:click=move |_| sync.refresh_now() class="underline">"Reload now"</button>
                    <button type="button" data-testid="rows-keep" on:click=move |_| sync.keep_editing() class="underline">"Keep editing"</button>
                </p>
            </Show>
        </div>
    }
}
