//! Node-to-node side of a PD node.
