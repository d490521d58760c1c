//! snac-core: everything in snac-pack that is not tensor math. The architecture
//! IR ([`arch`]) sits at the centre; config, data, search space, costs, search
//! and storage are built around it, and formats stay at the edge.

pub mod arch;
pub mod config;
pub mod cost;
pub mod data;
pub mod search;
pub mod space;
pub mod storage;
pub mod trial_yaml;
