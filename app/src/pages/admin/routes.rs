//! The admin panel as lazy routes. With `cargo leptos build --split` the
//! panel's code leaves the main wasm (the end-user app's first load does
//! not carry it) and comes in four chunks, fetched the first time one of
//! their pages is shown: the frame (layout and dashboard: what `/admin`
//! needs), the fleet (banks, a bank, provisioning), the commands (history,
//! a command's timeline, the admin's notifications of ended commands),
//! and people (access, users). Four groups rather than a chunk per page: the
//! splitter makes a chunk for every set of lazy functions that share
//! code, and a dozen lazy pages came to 150 files, whose HTTP overhead
//! outweighed what they saved. On the server they render as any route.

use leptos::prelude::*;
use leptos_router::LazyRoute;

/// The pages of each group.
#[derive(Clone, Copy, Debug)]
pub enum Frame {
    Layout,
    Dashboard,
}

#[derive(Clone, Copy, Debug)]
pub enum Fleet {
    Banks,
    BankPage,
    Provisioning,
    ProvisioningProgress,
}

#[derive(Clone, Copy, Debug)]
pub enum History {
    Commands,
    CommandTimeline,
    Notifications,
}

#[derive(Clone, Copy, Debug)]
pub enum People {
    Access,
    Users,
}

#[lazy]
fn frame(page: Frame) -> AnyView {
    match page {
        Frame::Layout => super::AdminLayout().into_any(),
        Frame::Dashboard => super::dashboard::Dashboard().into_any(),
    }
}

#[lazy]
fn fleet(page: Fleet) -> AnyView {
    match page {
        Fleet::Banks => super::banks::Banks().into_any(),
        Fleet::BankPage => super::banks::BankPage().into_any(),
        Fleet::Provisioning => super::provisioning::Provisioning().into_any(),
        Fleet::ProvisioningProgress => super::provisioning::ProvisioningProgress().into_any(),
    }
}

#[lazy]
fn history(page: History) -> AnyView {
    match page {
        History::Commands => super::commands::Commands().into_any(),
        History::CommandTimeline => super::commands::CommandTimeline().into_any(),
        History::Notifications => super::notifications::Notifications().into_any(),
    }
}

#[lazy]
fn people(page: People) -> AnyView {
    match page {
        People::Access => super::access::Access().into_any(),
        People::Users => super::users::Users().into_any(),
    }
}

/// A lazy route: a unit struct whose view is its page in its group.
/// `preload` fetches the group's chunk (`#[lazy]` names its loader
/// `__preload_<fn>`): the router awaits it before hydrating a page opened
/// directly, so the chunk is there when hydration reaches the page.
macro_rules! lazy_page {
    ($route:ident => $group:ident($page:expr), $preload:ident) => {
        pub struct $route;

        impl LazyRoute for $route {
            fn data() -> Self {
                $route
            }

            async fn view(_this: Self) -> AnyView {
                $group($page).await
            }

            async fn preload() {
                #[cfg(target_arch = "wasm32")]
                $preload().await;
            }
        }
    };
}

lazy_page!(Layout => frame(Frame::Layout), __preload_frame);
lazy_page!(Dashboard => frame(Frame::Dashboard), __preload_frame);
lazy_page!(Notifications => history(History::Notifications), __preload_history);
lazy_page!(Banks => fleet(Fleet::Banks), __preload_fleet);
lazy_page!(BankPage => fleet(Fleet::BankPage), __preload_fleet);
lazy_page!(Provisioning => fleet(Fleet::Provisioning), __preload_fleet);
lazy_page!(ProvisioningProgress => fleet(Fleet::ProvisioningProgress), __preload_fleet);
lazy_page!(Commands => history(History::Commands), __preload_history);
lazy_page!(CommandTimeline => history(History::CommandTimeline), __preload_history);
lazy_page!(Access => people(People::Access), __preload_people);
lazy_page!(Users => people(People::Users), __preload_people);
