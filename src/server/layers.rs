//! The two inputs of the config in force while serving: the config file and the installed
//! Istio's settings. Either changing rebuilds the engine from both ([`Injector::compose`])
//! and swaps it in for the next request; a combination that does not validate keeps the
//! engine being served.

use std::sync::{Arc, Mutex, MutexGuard};

use arc_swap::ArcSwap;

use crate::config::UserConfig;
use crate::config::layers::InstalledSetting;
use crate::engine::Injector;

/// The latest config file and installed Istio settings, and the engine built from them.
#[derive(Debug)]
pub struct ConfigLayers {
    state: Mutex<LayerState>,
    injector: Arc<ArcSwap<Injector>>,
}

#[derive(Debug)]
struct LayerState {
    user: UserConfig,
    installed: Vec<InstalledSetting>,
}

// === impl ConfigLayers ===

impl ConfigLayers {
    /// Starts from `user` alone; `injector` is the handle requests read.
    pub fn new(user: UserConfig, injector: Arc<ArcSwap<Injector>>) -> Self {
        ConfigLayers {
            state: Mutex::new(LayerState {
                user,
                installed: Vec::new(),
            }),
            injector,
        }
    }

    fn lock(&self) -> MutexGuard<'_, LayerState> {
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The config file as last taken into use.
    pub fn user(&self) -> UserConfig {
        self.lock().user.clone()
    }

    /// Takes a changed config file into use, over the current installed settings.
    pub fn set_user(&self, user: UserConfig) -> Result<(), String> {
        let mut state = self.lock();
        let injector = Injector::compose(&user, &state.installed).map_err(|error| error.to_string())?;
        self.injector.store(Arc::new(injector));
        state.user = user;
        Ok(())
    }

    /// Takes changed installed Istio settings into use, under the config file's keys.
    pub fn set_installed(&self, installed: Vec<InstalledSetting>) -> Result<(), String> {
        let mut state = self.lock();
        let injector = Injector::compose(&state.user, &installed).map_err(|error| error.to_string())?;
        self.injector.store(Arc::new(injector));
        state.installed = installed;
        Ok(())
    }
}
