"""FIX 4.4 acceptor (session layer, orders in, execution reports out); see ``acceptor``."""
