//! Reports: bits/dim of a data set under the model.

pub mod nll;
