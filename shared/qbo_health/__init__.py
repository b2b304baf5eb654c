"""QBO Connection Health: keeps QuickBooks Online connections alive."""
