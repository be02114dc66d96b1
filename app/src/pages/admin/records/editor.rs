//! A record's editor, the same for every record type (its fields come
//! from [`super::fields_of`]):
//!
//! - dirty state per field (what differs from the version it was read at);
//! - a newer version (`RecordUpdated` on `private-record.{type}.{id}`, or
//!   the version endpoint when there is no socket) refreshes a clean form
//!   silently, and shows a dirty one a sticky banner naming who changed
//!   it, with "Reload latest" (asks first) and "Dismiss";
//! - a save on a stale version opens the conflict dialog: field by field
//!   theirs, mine and where I started; "Take theirs", or "Re-apply mine
//!   onto the latest" (a field we both changed is the person's choice);
//! - who else has it open, marked "editing" while their form is dirty.

use leptos::prelude::*;
use lockstep_wire::{envelope::names, record::RecordUpdated};

use super::{
    fields_of,
    merge::{self, value, Values},
    read_record, save_record, Field, Kind, RecordForm, RecordType,
};
use crate::{
    error::{AppError, StaleRecord},
    format,
    pages::common::ticking_now,
    realtime::{
        presence::{use_presence, Member, Presence},
        use_deliveries, Delivery,
    },
};

/// Version polling without a socket: clean, and dirty.
#[cfg_attr(not(feature = "hydrate"), allow(dead_code))]
const POLL_CLEAN_MS: u64 = 30_000;
#[cfg_attr(not(feature = "hydrate"), allow(dead_code))]
const POLL_DIRTY_MS: u64 = 10_000;

/// A newer version than the form's, heard while it was dirty.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Newer {
    version: i64,
    by: Option<String>,
    at: Option<i64>,
}

/// The editor's state (a cheap `Copy` handle).
#[derive(Clone, Copy)]
struct Editor {
    fields: &'static [Field],
    /// The record as last read or saved: the version the next save names.
    stored: RwSignal<Option<RecordForm>>,
    /// The form's values.
    mine: RwSignal<Values>,
    newer: RwSignal<Option<Newer>>,
    /// The newest version whose banner was dismissed.
    dismissed: RwSignal<i64>,
    asking_reload: RwSignal<bool>,
    conflict: RwSignal<Option<StaleRecord>>,
    /// In the conflict dialog: the fields we both changed, and whether
    /// mine is kept (`None` until chosen).
    choices: RwSignal<Vec<(String, Option<bool>)>>,
    status: RwSignal<Option<Result<String, String>>>,
}

impl Editor {
    fn new(record_type: RecordType) -> Self {
        Editor {
            fields: fields_of(record_type),
            stored: RwSignal::new(None),
            mine: RwSignal::new(Vec::new()),
            newer: RwSignal::new(None),
            dismissed: RwSignal::new(0),
            asking_reload: RwSignal::new(false),
            conflict: RwSignal::new(None),
            choices: RwSignal::new(Vec::new()),
            status: RwSignal::new(None),
        }
    }

    /// Whether the editor still exists: timers and answers that arrive
    /// after it was closed do nothing (a disposed signal must not be read).
    fn alive(&self) -> bool {
        self.stored.try_with_untracked(|_| ()).is_some()
            && self.mine.try_with_untracked(|_| ()).is_some()
    }

    /// Another record in the same editor (its id changed): nothing of the
    /// last one's banner, dialog or status stays.
    fn switch_to(&self, form: RecordForm) {
        self.dismissed.set(0);
        self.status.set(None);
        self.conflict.set(None);
        self.choices.set(Vec::new());
        self.load(form);
    }

    /// Shows `form` as the stored record, discarding the form's values.
    fn load(&self, form: RecordForm) {
        self.mine.set(form.values.clone());
        self.stored.set(Some(form));
        self.newer.set(None);
        self.asking_reload.set(false);
    }

    fn version(&self) -> i64 {
        self.stored
            .try_with_untracked(|s| s.as_ref().map(|s| s.version))
            .flatten()
            .unwrap_or(0)
    }

    fn dirty_field(&self, field: &str) -> bool {
        let base = self.stored.with(|s| {
            s.as_ref()
                .map(|s| value(&s.values, field).to_string())
                .unwrap_or_default()
        });
        self.mine.with(|m| value(m, field) != base)
    }

    fn dirty(&self) -> bool {
        self.fields.iter().any(|f| self.dirty_field(f.name))
    }

    fn set(&self, field: &str, v: String) {
        self.mine
            .update(|m| match m.iter_mut().find(|(f, _)| f == field) {
                Some((_, old)) => *old = v,
                None => m.push((field.to_string(), v)),
            });
    }

    /// The form's changes: the fields that differ from the stored record.
    fn changes(&self) -> Values {
        let base = self
            .stored
            .with_untracked(|s| s.as_ref().map(|s| s.values.clone()))
            .unwrap_or_default();
        self.mine.with_untracked(|m| {
            m.iter()
                .filter(|(f, v)| value(&base, f) != v)
                .cloned()
                .collect()
        })
    }

    /// A version newer than the form's exists: a clean form reads it at
    /// once; a dirty one shows the banner (unless this version was
    /// dismissed).
    fn heard_of(&self, newer: Newer) {
        if !self.alive() || newer.version <= self.version() {
            return;
        }
        if self.dirty_untracked() {
            if newer.version > self.dismissed.get_untracked() {
                self.newer.set(Some(newer));
            }
        } else {
            self.reload();
        }
    }

    fn dirty_untracked(&self) -> bool {
        untrack(|| self.dirty())
    }

    /// Reads the record again and shows it (discarding the form's values).
    fn reload(&self) {
        let Some((kind, id)) = self
            .stored
            .with_untracked(|s| s.as_ref().map(|s| (s.record_type.clone(), s.id.clone())))
        else {
            return;
        };
        let this = *self;
        leptos::task::spawn_local(async move {
            let answer = read_record(kind, id).await;
            if !this.alive() {
                return;
            }
            match answer {
                Ok(form) => {
                    if form.version >= this.version() {
                        this.load(form);
                    }
                }
                Err(e) => this.status.set(Some(Err(e.to_string()))),
            }
        });
    }

    /// Reads the record's last edit and treats it as heard of (after the
    /// log lost track: never a made-up version).
    fn check(&self) {
        let Some((kind, id)) = self
            .stored
            .try_with_untracked(|s| s.as_ref().map(|s| (s.record_type.clone(), s.id.clone())))
            .flatten()
        else {
            return;
        };
        let this = *self;
        leptos::task::spawn_local(async move {
            if let Ok(form) = read_record(kind, id).await {
                this.heard_of(Newer {
                    version: form.version,
                    by: form.updated_by,
                    at: form.updated_at,
                });
            }
        });
    }

    fn heard(&self, delivery: &Delivery) {
        match delivery {
            Delivery::Envelope(e) => {
                if let Some(u) = e.data_as::<RecordUpdated>(names::RECORD_UPDATED) {
                    self.heard_of(Newer {
                        version: u.version,
                        by: u.updated_by.map(|b| b.name),
                        at: Some(u.updated_at),
                    });
                }
            }
            // The log no longer reaches back to where the form was read.
            Delivery::Reset => self.check(),
        }
    }

    /// Saves the form's changes on `version`.
    async fn save(self, version: i64, changes: Values) {
        let Some((kind, id)) = self
            .stored
            .with_untracked(|s| s.as_ref().map(|s| (s.record_type.clone(), s.id.clone())))
        else {
            return;
        };
        if changes.is_empty() {
            return;
        }
        let answer = save_record(kind, id, version, changes).await;
        if !self.alive() {
            return;
        }
        match answer {
            Ok(form) => {
                self.load(form);
                self.status.set(Some(Ok("Saved.".into())));
            }
            Err(AppError::Stale(stale)) => {
                let clashes = self.clashes(&stale);
                self.choices
                    .set(clashes.into_iter().map(|f| (f, None)).collect());
                self.status.set(None);
                self.conflict.set(Some(*stale));
            }
            Err(e) => self.status.set(Some(Err(e.to_string()))),
        }
    }

    fn rows(&self, theirs: &StaleRecord) -> Vec<merge::FieldRow> {
        let names: Vec<&str> = self.fields.iter().map(|f| f.name).collect();
        let base = self
            .stored
            .with_untracked(|s| s.as_ref().map(|s| s.values.clone()))
            .unwrap_or_default();
        self.mine
            .with_untracked(|m| merge::rows(&names, &base, &theirs.values, m))
    }

    fn clashes(&self, theirs: &StaleRecord) -> Vec<String> {
        self.rows(theirs)
            .into_iter()
            .filter(|r| r.clash())
            .map(|r| r.field)
            .collect()
    }

    /// "Take theirs": the form shows the stored record.
    fn take_theirs(&self, theirs: StaleRecord) {
        self.adopt(&theirs, theirs.values.clone());
    }

    /// The stored record becomes the form's base, with `values` in the
    /// form.
    fn adopt(&self, theirs: &StaleRecord, values: Values) {
        self.stored.update(|s| {
            if let Some(s) = s.as_mut() {
                s.version = theirs.version;
                s.values = theirs.values.clone();
                s.updated_by = theirs.updated_by.clone();
                s.updated_at = theirs.updated_at;
            }
        });
        self.mine.set(values);
        self.newer.set(None);
        self.conflict.set(None);
    }

    /// "Re-apply mine onto the latest", then save it on the latest
    /// version.
    async fn reapply(self, theirs: StaleRecord) {
        let names: Vec<&str> = self.fields.iter().map(|f| f.name).collect();
        let base = self
            .stored
            .with_untracked(|s| s.as_ref().map(|s| s.values.clone()))
            .unwrap_or_default();
        let choices = self.choices.get_untracked();
        let keep_mine = |f: &str| {
            choices
                .iter()
                .any(|(c, keep)| c == f && *keep == Some(true))
        };
        let (merged, _) = self
            .mine
            .with_untracked(|m| merge::reapply(&names, &base, &theirs.values, m, keep_mine));
        self.adopt(&theirs, merged);
        let changes = self.changes();
        self.save(theirs.version, changes).await;
    }
}

/// The editor of one record, read by id (the form is the server's, so
/// the page renders whole, then goes live).
#[component]
pub fn RecordEditor(
    record_type: RecordType,
    #[prop(into)] record_id: Signal<String>,
    #[prop(into)] heading: String,
) -> impl IntoView {
    let form = Resource::new_blocking(
        move || record_id.get(),
        move |id| read_record(record_type.as_str().to_string(), id),
    );
    let ed = Editor::new(record_type);
    let live = use_deliveries(move |d| ed.heard(d));
    let presence = use_presence();
    Effect::new(move |_| presence.set_editing(ed.dirty()));
    #[cfg(feature = "hydrate")]
    poll_version(ed);
    view! {
        <section class="mt-6 rounded-xl border border-slate-200 bg-white p-4" aria-label=heading.clone() data-testid=format!("editor-{}", record_type.as_str())>
            <h2 class="font-semibold">{heading.clone()}</h2>
            <Suspense fallback=|| view! { <p class="mt-2 text-sm text-slate-600">"Loading…"</p> }>
                {move || Suspend::new(async move {
                    match form.await {
                        Ok(f) => {
                            live.follow(&[(&f.channel, f.seq)]);
                            presence.join(&f.presence);
                            let now = f.now;
                            let me = f.me.clone();
                            if ed.stored.with_untracked(|s| s.as_ref().map(|s| s.id != f.id).unwrap_or(true)) {
                                ed.switch_to(f);
                            }
                            view! { <Form ed presence me now/> }.into_any()
                        }
                        Err(e) => super::super::failure(e),
                    }
                })}
            </Suspense>
        </section>
    }
}

/// Asks the version endpoint while the socket is not up (every 30 s, or
/// 10 s while the form is dirty) and treats a newer version as a
/// `RecordUpdated`.
#[cfg(feature = "hydrate")]
fn poll_version(ed: Editor) {
    use crate::realtime::{use_realtime, Transport};
    use lockstep_wire::record::RecordVersion;
    let rt = use_realtime();
    // Ticks at the dirty pace; a clean form asks every third tick.
    fn tick(ed: Editor, rt: Option<crate::realtime::Realtime>, n: u64) {
        if ed.stored.try_with_untracked(|_| ()).is_none() {
            return; // the editor is gone
        }
        set_timeout(
            move || {
                if !ed.alive() {
                    return; // closed meanwhile
                }
                let due = n.is_multiple_of(POLL_CLEAN_MS / POLL_DIRTY_MS) || ed.dirty_untracked();
                let skip =
                    !due || rt.is_some_and(|rt| rt.transport().get_untracked() == Transport::Live);
                let target = ed.stored.try_with_untracked(|s| {
                    s.as_ref()
                        .map(|s| format!("/api/v1/records/{}/{}/version", s.record_type, s.id))
                });
                let Some(target) = target else { return };
                leptos::task::spawn_local(async move {
                    if let (false, Some(url)) = (skip, target) {
                        let answer = gloo_net::http::Request::get(&url)
                            .header("Accept", "application/json")
                            .send()
                            .await;
                        if let Some(r) = answer.ok().filter(|r| r.ok()) {
                            if let Ok(v) = r.json::<RecordVersion>().await {
                                ed.heard_of(Newer {
                                    version: v.version,
                                    by: v.updated_by.map(|b| b.name),
                                    at: v.updated_at,
                                });
                            }
                        }
                    }
                    tick(ed, rt, n + 1);
                });
            },
            std::time::Duration::from_millis(POLL_DIRTY_MS),
        );
    }
    tick(ed, rt, 1);
}

const INPUT: &str = "mt-1 w-full rounded-md border border-slate-300 px-3 py-1.5 data-[dirty=true]:border-amber-500 data-[dirty=true]:bg-amber-50";

#[component]
fn Form(ed: Editor, presence: Presence, me: String, now: i64) -> impl IntoView {
    let now = ticking_now(now);
    let saving = Action::new_local(move |_: &()| {
        let (version, changes) = (ed.version(), ed.changes());
        ed.save(version, changes)
    });
    let others = Signal::derive(move || {
        presence
            .members()
            .get()
            .into_iter()
            .filter(|m| m.id != me)
            .collect::<Vec<Member>>()
    });
    view! {
        <Others others/>
        <Banner ed now/>
        <form class="mt-3 grid gap-3 sm:grid-cols-2" on:submit=move |ev| {
            ev.prevent_default();
            saving.dispatch(());
        }>
            {ed.fields.iter().map(|f| view! { <FieldInput ed f=*f/> }).collect_view()}
            <div class="flex flex-wrap items-center gap-3 sm:col-span-2">
                <button type="submit" data-testid="record-save" disabled=move || !ed.dirty() || saving.pending().get()
                    class="rounded-md bg-indigo-600 px-3 py-1.5 text-sm font-semibold text-white hover:bg-indigo-500 disabled:opacity-50">
                    "Save"
                </button>
                <button type="button" data-testid="record-discard" disabled=move || !ed.dirty()
                    on:click=move |_| {
                        if ed.newer.get_untracked().is_some() {
                            // The stored record moved on: show it.
                            ed.reload();
                        } else {
                            ed.mine.set(ed.stored.with_untracked(|s| s.as_ref().map(|s| s.values.clone()).unwrap_or_default()));
                        }
                    }
                    class="rounded-md border border-slate-300 px-3 py-1.5 text-sm disabled:opacity-50">
                    "Discard changes"
                </button>
                <span class="text-xs text-slate-600" data-testid="record-version" data-version=move || ed.stored.with(|s| s.as_ref().map(|s| s.version).unwrap_or(0))>
                    {move || ed.stored.with(|s| s.as_ref().and_then(|s| s.updated_at.map(|at| {
                        let by = s.updated_by.clone().unwrap_or_else(|| "the system".into());
                        format!("Last edited by {by}, {}", format::ago(now.get(), Some(at)))
                    })))}
                </span>
                <span role="status" class="text-sm" data-testid="record-status">
                    {move || ed.status.get().map(|s| match s {
                        Ok(m) => view! { <span class="text-emerald-800">{m}</span> }.into_any(),
                        Err(m) => view! { <span class="text-red-800">{m}</span> }.into_any(),
                    })}
                </span>
            </div>
        </form>
        <ConflictDialog ed/>
    }
}

#[component]
fn FieldInput(ed: Editor, f: Field) -> impl IntoView {
    let name = f.name;
    let current = move || ed.mine.with(|m| value(m, name).to_string());
    let dirty = move || ed.dirty_field(name).to_string();
    let testid = format!("field-{name}");
    let input = match f.kind {
        Kind::Line { required } => view! {
            <input data-testid=testid data-dirty=dirty required=required maxlength="200" class=INPUT
                prop:value=current on:input=move |ev| ed.set(name, event_target_value(&ev))/>
        }
        .into_any(),
        Kind::Notes => view! {
            <textarea data-testid=testid data-dirty=dirty rows="3" maxlength="2000" class=INPUT
                prop:value=current on:input=move |ev| ed.set(name, event_target_value(&ev))></textarea>
        }
        .into_any(),
        Kind::Choice(options) => view! {
            <select data-testid=testid data-dirty=dirty class=INPUT prop:value=current
                on:change=move |ev| ed.set(name, event_target_value(&ev))>
                {options.iter().map(|o| view! { <option value=*o selected=move || current() == *o>{*o}</option> }).collect_view()}
            </select>
        }
        .into_any(),
        Kind::Flag => view! {
            <input type="checkbox" data-testid=testid data-dirty=dirty class="mt-2 h-4 w-4"
                prop:checked=move || current() == "true"
                on:change=move |ev| ed.set(name, event_target_checked(&ev).to_string())/>
        }
        .into_any(),
        Kind::Time => view! {
            <input type="datetime-local" data-testid=testid data-dirty=dirty class=INPUT
                prop:value=current on:input=move |ev| ed.set(name, event_target_value(&ev))/>
        }
        .into_any(),
    };
    view! {
        <label class=if f.kind == Kind::Notes { "text-sm sm:col-span-2" } else { "text-sm" }>
            <span class="block text-slate-700">
                {f.label}
                <Show when=move || ed.dirty_field(name)>
                    <span class="ml-1 text-xs text-amber-800">"(changed)"</span>
                </Show>
            </span>
            {input}
        </label>
    }
}

/// The others with the record open.
#[component]
fn Others(others: Signal<Vec<Member>>) -> impl IntoView {
    view! {
        <Show when=move || !others.get().is_empty()>
            <ul class="mt-2 flex flex-wrap gap-2" aria-label="Also here" data-testid="record-others">
                {move || others.get().into_iter().map(|m| {
                    let initials: String = m.name.split_whitespace().filter_map(|w| w.chars().next()).take(2).collect();
                    view! {
                        <li class="flex items-center gap-1.5 rounded-full border border-slate-200 py-0.5 pl-0.5 pr-2 text-xs" data-testid="record-other" data-editing=m.editing.to_string()>
                            <span aria-hidden="true" class="flex h-6 w-6 items-center justify-center rounded-full bg-indigo-100 font-semibold text-indigo-800">{initials}</span>
                            {m.name.clone()}
                            {m.editing.then(|| view! { <span class="font-medium text-amber-800">"editing"</span> })}
                        </li>
                    }
                }).collect_view()}
            </ul>
        </Show>
    }
}

/// "Updated by {name} {time ago} while you were editing", until reloaded
/// or dismissed.
#[component]
fn Banner(ed: Editor, now: ReadSignal<i64>) -> impl IntoView {
    view! {
        {move || ed.newer.get().map(|n| {
            let who = n.by.clone().unwrap_or_else(|| "someone else".into());
            view! {
                <div role="alert" data-testid="record-banner" class="sticky top-0 z-10 mt-3 rounded-md border border-amber-300 bg-amber-50 px-3 py-2 text-sm text-amber-900">
                    <p>
                        {move || match n.at {
                            Some(at) => format!("Updated by {who} {} while you were editing.", format::ago(now.get(), Some(at))),
                            None => format!("Updated by {who} while you were editing."),
                        }}
                    </p>
                    <Show when=move || ed.asking_reload.get() fallback=move || view! {
                        <div class="mt-1 flex gap-3">
                            <button type="button" data-testid="banner-reload" class="font-medium underline" on:click=move |_| {
                                if ed.dirty_untracked() { ed.asking_reload.set(true) } else { ed.reload() }
                            }>"Reload latest"</button>
                            <button type="button" data-testid="banner-dismiss" class="underline" on:click=move |_| {
                                if let Some(n) = ed.newer.get_untracked() {
                                    ed.dismissed.set(n.version);
                                }
                                ed.newer.set(None);
                            }>"Dismiss"</button>
                        </div>
                    }>
                        <div class="mt-1 flex flex-wrap items-center gap-3">
                            <span>"Discard your changes and load the latest?"</span>
                            <button type="button" data-testid="banner-reload-confirm" class="font-medium underline" on:click=move |_| ed.reload()>"Discard and reload"</button>
                            <button type="button" class="underline" on:click=move |_| ed.asking_reload.set(false)>"Keep my changes"</button>
                        </div>
                    </Show>
                </div>
            }
        })}
    }
}

/// The 409 dialog: field by field, where I started, theirs and mine.
#[component]
fn ConflictDialog(ed: Editor) -> impl IntoView {
    let label_of = move |field: &str| {
        ed.fields
            .iter()
            .find(|f| f.name == field)
            .map(|f| f.label)
            .unwrap_or("")
    };
    let reapply = Action::new_local(move |theirs: &StaleRecord| ed.reapply(theirs.clone()));
    // Focus moves into the dialog when it opens (its heading).
    #[cfg(feature = "hydrate")]
    Effect::new(move |_| {
        if ed.conflict.with(Option::is_some) {
            request_animation_frame(|| {
                use wasm_bindgen::JsCast;
                if let Some(h) = document()
                    .get_element_by_id("conflict-h")
                    .and_then(|h| h.dyn_into::<web_sys::HtmlElement>().ok())
                {
                    let _ = h.focus();
                }
            });
        }
    });
    let undecided = move || {
        ed.choices
            .with(|c| c.iter().any(|(_, keep)| keep.is_none()))
    };
    view! {
        {move || ed.conflict.get().map(|theirs| {
            let rows = ed.rows(&theirs);
            let who = theirs.updated_by.clone().unwrap_or_else(|| "Someone else".into());
            let (t1, t2) = (theirs.clone(), theirs.clone());
            view! {
                <div role="dialog" aria-modal="true" aria-labelledby="conflict-h" data-testid="conflict"
                    on:keydown=move |ev| if ev.key() == "Escape" { ed.conflict.set(None) }
                    class="fixed inset-0 z-30 flex items-center justify-center bg-slate-900/40 p-4">
                    <div class="max-h-full w-full max-w-2xl overflow-auto rounded-xl bg-white p-5 shadow-xl">
                        <h2 id="conflict-h" tabindex="-1" class="text-lg font-semibold">{format!("{who} saved this while you were editing")}</h2>
                        <p class="mt-1 text-sm text-slate-700">"Nothing of yours was saved. Choose what to keep."</p>
                        <table class="mt-3 w-full text-left text-sm">
                            <thead class="text-slate-600">
                                <tr>
                                    <th scope="col" class="py-1 pr-2 font-medium">"Field"</th>
                                    <th scope="col" class="py-1 pr-2 font-medium">"When you started"</th>
                                    <th scope="col" class="py-1 pr-2 font-medium">"Theirs (stored)"</th>
                                    <th scope="col" class="py-1 font-medium">"Yours"</th>
                                </tr>
                            </thead>
                            <tbody>
                                {rows.into_iter().map(|r| {
                                    let clash = r.clash();
                                    let field = r.field.clone();
                                    let choose = move |keep: bool| {
                                        let field = field.clone();
                                        move |_| ed.choices.update(|c| {
                                            if let Some((_, k)) = c.iter_mut().find(|(f, _)| *f == field) {
                                                *k = Some(keep);
                                            }
                                        })
                                    };
                                    let name = format!("keep-{}", r.field);
                                    view! {
                                        <tr class="border-t border-slate-100 align-top" data-testid=format!("conflict-{}", r.field) data-clash=clash.to_string()>
                                            <th scope="row" class="py-1 pr-2 font-medium">{label_of(&r.field)}</th>
                                            <td class="py-1 pr-2 text-slate-600">{shown(&r.base)}</td>
                                            <td class="py-1 pr-2" data-testid="theirs">{shown(&r.theirs)}</td>
                                            <td class="py-1" data-testid="mine">
                                                {shown(&r.mine)}
                                                {clash.then(|| view! {
                                                    <fieldset class="mt-1 text-xs">
                                                        <legend class="sr-only">"Keep which?"</legend>
                                                        <label class="mr-2"><input type="radio" name=name.clone() data-testid="keep-mine" on:change=choose(true)/>" keep mine"</label>
                                                        <label><input type="radio" name=name.clone() data-testid="keep-theirs" on:change=choose(false)/>" keep theirs"</label>
                                                    </fieldset>
                                                })}
                                            </td>
                                        </tr>
                                    }
                                }).collect_view()}
                            </tbody>
                        </table>
                        <div class="mt-4 flex flex-wrap gap-3">
                            <button type="button" data-testid="conflict-reapply" disabled=undecided
                                on:click=move |_| { reapply.dispatch(t1.clone()); }
                                class="rounded-md bg-indigo-600 px-3 py-1.5 text-sm font-semibold text-white hover:bg-indigo-500 disabled:opacity-50">
                                "Re-apply mine onto the latest"
                            </button>
                            <button type="button" data-testid="conflict-theirs" on:click=move |_| ed.take_theirs(t2.clone())
                                class="rounded-md border border-slate-300 px-3 py-1.5 text-sm">
                                "Take theirs"
                            </button>
                            <button type="button" data-testid="conflict-close" on:click=move |_| ed.conflict.set(None)
                                class="rounded-md px-3 py-1.5 text-sm underline">
                                "Keep editing"
                            </button>
                        </div>
                    </div>
                </div>
            }
        })}
    }
}

/// A value as the dialog shows it ("(empty)" for none).
fn shown(v: &str) -> String {
    if v.is_empty() {
        "(empty)".into()
    } else {
        v.to_string()
    }
}
