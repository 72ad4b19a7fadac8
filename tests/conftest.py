pytest_plugins = ["httpserver", "dmfixtures", "mnistdata"]
