//! Node-to-node side of a PD node.

pub mod resolver;
