//! The in-sandbox agent: a small server that runs commands and moves files for its clients.
