pytest_plugins = ["support.httpserver", "support.dmfixtures", "support.mnistdata"]
