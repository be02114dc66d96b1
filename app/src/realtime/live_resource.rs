//! [`LiveResource`]: a page's data, rendered on the server and hydrated
//! like a `Resource`, that live refetches replace without reloading the
//! `Resource` itself. A refetch fetches in the background and swaps the
//! answer in when it arrives (the newest request wins); the page's
//! `Suspend` then resolves at once, so no `Transition` is ever left
//! waiting on a superseded load (refetches bursting over one another
//! left the old content on screen now and then). A change of the source
//! (another query, another id) loads through the `Resource` as usual.

use std::{future::Future, pin::Pin, sync::Arc};

use leptos::prelude::*;
use serde::{de::DeserializeOwned, Serialize};

use crate::error::AppError;

type Fetch<S, T> =
    Arc<dyn Fn(S) -> Pin<Box<dyn Future<Output = Result<T, AppError>> + Send>> + Send + Sync>;

/// See the module. `Copy`, like the handles it holds.
pub struct LiveResource<S: Send + Sync + 'static, T: Send + Sync + 'static> {
    resource: Resource<Result<T, AppError>>,
    /// The newest background answer and the source it was read for.
    fresh: RwSignal<Option<(S, Result<T, AppError>)>>,
    source: StoredValue<Arc<dyn Fn() -> S + Send + Sync>>,
    #[cfg_attr(not(feature = "hydrate"), allow(dead_code))]
    fetch: StoredValue<Fetch<S, T>>,
    /// Requests started; an answer older than the newest is dropped.
    #[cfg_attr(not(feature = "hydrate"), allow(dead_code))]
    started: StoredValue<u64>,
}

impl<S: Send + Sync + 'static, T: Send + Sync + 'static> Clone for LiveResource<S, T> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<S: Send + Sync + 'static, T: Send + Sync + 'static> Copy for LiveResource<S, T> {}

impl<S, T> LiveResource<S, T>
where
    S: Clone + PartialEq + Send + Sync + 'static,
    T: Clone + Serialize + DeserializeOwned + Send + Sync + 'static,
{
    /// As `Resource::new_blocking(source, fetch)`.
    pub fn new<Fu>(
        source: impl Fn() -> S + Send + Sync + 'static,
        fetch: impl Fn(S) -> Fu + Send + Sync + 'static,
    ) -> Self
    where
        Fu: Future<Output = Result<T, AppError>> + Send + 'static,
    {
        let source: Arc<dyn Fn() -> S + Send + Sync> = Arc::new(source);
        let fetch: Fetch<S, T> = Arc::new(move |s| Box::pin(fetch(s)));
        let resource = Resource::new_blocking(
            {
                let source = source.clone();
                move || source()
            },
            {
                let fetch = fetch.clone();
                move |s| fetch(s)
            },
        );
        LiveResource {
            resource,
            fresh: RwSignal::new(None),
            source: StoredValue::new(source),
            fetch: StoredValue::new(fetch),
            started: StoredValue::new(0),
        }
    }

    /// The data for the current source: the newest background answer for
    /// it, or the resource's. Read it inside the page's `Suspend`.
    pub async fn read(self) -> Result<T, AppError> {
        let loaded = self.resource.await;
        let current = self.source.with_value(|s| s());
        match self.fresh.get() {
            Some((s, fresh)) if s == current => fresh,
            _ => loaded,
        }
    }

    /// Reads the data again in the background (browser only; nothing on
    /// the server).
    pub fn refetch(&self) {
        #[cfg(feature = "hydrate")]
        {
            let this = *self;
            let Some(source) = this.source.try_with_value(|s| s()) else {
                return;
            };
            let Some(fetch) = this.fetch.try_get_value() else {
                return;
            };
            let Some(n) = this.started.try_update_value(|n| {
                *n += 1;
                *n
            }) else {
                return;
            };
            leptos::task::spawn_local(async move {
                let answer = fetch(source.clone()).await;
                if this.started.try_get_value() == Some(n) {
                    this.fresh.try_set(Some((source, answer)));
                }
            });
        }
    }
}
