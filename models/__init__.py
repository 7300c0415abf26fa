"""nn.Modules shared by the train scripts and the demos, one file per experiment."""
