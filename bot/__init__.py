"""The application side of newsbot: the Discord bot and the command line."""
