"""Order management (OMS): the hub every order of every channel goes through."""
