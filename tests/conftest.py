pytest_plugins = ["httpserver", "dmfixtures"]
