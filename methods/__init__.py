"""Method adapters: classical baselines and generative refiners (M2SVid, StereoCrafter, SVG).

Use :data:`methods.registry.METHODS` to look one up by name.
"""
