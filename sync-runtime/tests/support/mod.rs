//! Helpers shared by integration tests. Each test binary uses a part of them, hence `dead_code`.
#![allow(dead_code)]

pub mod cluster;
pub mod proxy;
