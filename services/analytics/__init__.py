"""Analytics service: a rebuildable read model of the leads, qualification and activity topics, and its reports."""
