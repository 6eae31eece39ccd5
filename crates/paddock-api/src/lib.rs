//! The Agent Sandbox API model.
