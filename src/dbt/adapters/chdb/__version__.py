version = "1.10.3"
