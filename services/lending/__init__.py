"""Lending context: loan applications, approval and the disbursement saga."""
