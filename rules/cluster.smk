# Rules that stay on the submitting machine when a cluster executor is used.
