"""The dashboard's screens: the runs table, a run's detail, and confirmations."""
