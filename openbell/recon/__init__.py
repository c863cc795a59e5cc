"""Three-way reconciliation: internal ledger vs exchange clearing file vs bank statement."""
