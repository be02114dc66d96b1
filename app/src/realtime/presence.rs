//! Who else has a record open: the members of its presence channel
//! (`presence-record.{type}.{id}`), and whether each is editing, which
//! they tell the others with a `client-editing` whisper (said again to
//! whoever joins later). Only while the socket is up: a presence channel
//! is not a log, so polling cannot stand in for it.

use leptos::prelude::*;

/// Another admin with the record open.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Member {
    pub id: String,
    pub name: String,
    pub editing: bool,
}

/// The whisper an editor sends when its form turns dirty or clean.
pub use lockstep_wire::EDITING_MARK as EDITING;

/// The members of one presence channel (a cheap `Copy` handle).
#[derive(Clone, Copy)]
pub struct Presence {
    members: RwSignal<Vec<Member>>,
    #[cfg(feature = "hydrate")]
    inner: StoredValue<Inner, LocalStorage>,
}

#[cfg(feature = "hydrate")]
struct Inner {
    rt: Option<super::Realtime>,
    channel: Option<String>,
    id: Option<u64>,
    editing: bool,
}

/// Call at the component's top level, then [`Presence::join`] once the
/// channel is known; the channel is left with the component.
pub fn use_presence() -> Presence {
    let presence = Presence {
        members: RwSignal::new(Vec::new()),
        #[cfg(feature = "hydrate")]
        inner: StoredValue::new_local(Inner {
            rt: super::use_realtime(),
            channel: None,
            id: None,
            editing: false,
        }),
    };
    #[cfg(feature = "hydrate")]
    on_cleanup(move || presence.leave());
    presence
}

impl Presence {
    /// Everyone on the channel, this admin included.
    pub fn members(&self) -> Signal<Vec<Member>> {
        self.members.into()
    }

    /// Joins `channel` (once; a second call with it does nothing).
    pub fn join(&self, channel: &str) {
        #[cfg(feature = "hydrate")]
        {
            let Some((rt, same)) = self
                .inner
                .try_with_value(|i| (i.rt, i.channel.as_deref() == Some(channel)))
            else {
                return;
            };
            let Some(rt) = rt.filter(|_| !same) else {
                return;
            };
            self.leave();
            let this = *self;
            let shared = rt.driver.get_value();
            let id = super::driver::join(
                &shared,
                channel,
                std::rc::Rc::new(move |e: &super::PresenceEvent| this.on_event(e)),
            );
            self.inner.update_value(|i| {
                i.channel = Some(channel.to_string());
                i.id = Some(id);
            });
        }
        #[cfg(not(feature = "hydrate"))]
        let _ = channel;
    }

    /// Tells the others whether this admin's form is dirty (only when it
    /// changed).
    pub fn set_editing(&self, editing: bool) {
        #[cfg(feature = "hydrate")]
        {
            let changed = self.inner.try_update_value(|i| {
                let changed = i.editing != editing;
                i.editing = editing;
                changed
            });
            if changed == Some(true) {
                self.announce();
            }
        }
        #[cfg(not(feature = "hydrate"))]
        let _ = editing;
    }

    #[cfg(feature = "hydrate")]
    fn announce(&self) {
        let Some((Some(rt), Some(channel), editing)) = self
            .inner
            .try_with_value(|i| (i.rt, i.channel.clone(), i.editing))
        else {
            return;
        };
        super::driver::whisper(
            &rt.driver.get_value(),
            &channel,
            EDITING,
            &serde_json::json!({ "editing": editing }),
        );
    }

    #[cfg(feature = "hydrate")]
    fn on_event(&self, event: &super::PresenceEvent) {
        use super::PresenceEvent as E;
        match event {
            E::Members(list) => {
                self.members.set(
                    list.iter()
                        .map(|(id, name)| Member {
                            id: id.clone(),
                            name: name.clone(),
                            editing: false,
                        })
                        .collect(),
                );
                // Those already here learn that this admin is editing.
                if self.inner.with_value(|i| i.editing) {
                    self.announce();
                }
            }
            E::Added(id, name) => {
                self.members.update(|m| {
                    if !m.iter().any(|x| x.id == *id) {
                        m.push(Member {
                            id: id.clone(),
                            name: name.clone(),
                            editing: false,
                        });
                    }
                });
                if self.inner.with_value(|i| i.editing) {
                    self.announce();
                }
            }
            E::Removed(id) => self.members.update(|m| m.retain(|x| x.id != *id)),
            E::Whisper {
                user_id,
                event,
                data,
            } if event == EDITING => {
                let editing = data.get("editing").and_then(|e| e.as_bool()) == Some(true);
                self.members.update(|m| {
                    if let Some(x) = m.iter_mut().find(|x| x.id == *user_id) {
                        x.editing = editing;
                    }
                });
            }
            E::Whisper { .. } => {}
            E::Lost => self.members.set(Vec::new()),
        }
    }

    #[cfg(feature = "hydrate")]
    fn leave(&self) {
        let Some((rt, id)) = self.inner.try_update_value(|i| {
            i.channel = None;
            (i.rt, i.id.take())
        }) else {
            return;
        };
        if let (Some(shared), Some(id)) = (rt.and_then(|rt| rt.driver.try_get_value()), id) {
            super::driver::leave(&shared, id);
        }
    }
}
