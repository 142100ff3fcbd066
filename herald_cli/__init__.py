"""Herald's ops CLI (`herald`): never shipped in a Lambda zip."""
