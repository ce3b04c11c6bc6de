"""Tools the backend runs itself for an assistant (`file_search`), as opposed to functions the client runs."""
