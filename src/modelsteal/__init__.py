from modelsteal._version import __version__
