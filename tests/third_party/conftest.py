"""Third-party programs kept as test data: never collected as tests."""

collect_ignore_glob = ["*"]
