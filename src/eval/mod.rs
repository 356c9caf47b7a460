//! Reports: bits/dim of a data set under the model.

pub mod calibrate;
pub mod nll;
pub mod metrics;
pub mod classical;
pub mod rd;
pub mod plot;
