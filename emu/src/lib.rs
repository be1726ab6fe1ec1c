//! The machine: memory layout, devices, loaders and the run loop that drives a backend.
