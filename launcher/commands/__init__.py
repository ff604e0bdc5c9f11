"""One module per subcommand: each exports add_parser(subparsers) and run(**kwargs) -> int."""
