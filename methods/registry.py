"""Lazy registry of method adapters: name -> "module:Class".

Third-party packages add methods through the ``stereobench.methods`` entry-point group in their
own pyproject.toml, without editing the suite::

    [project.entry-points."stereobench.methods"]
    my-method = "my_package.adapter:MyMethod"
"""

from benchmark.registry import LazyRegistry

METHODS = LazyRegistry(
    "method",
    {
        "left-copy": "methods.baselines:LeftCopy",
        "warp-only": "methods.baselines:WarpOnly",
        "opencv-inpaint": "methods.baselines:OpenCVInpaint",
        "background-fill": "methods.baselines:BackgroundFill",
        "temporal-fill": "methods.baselines:TemporalFill",
        "m2svid": "methods.m2svid:M2SVid",
        "m2svid-no-full-attention": "methods.m2svid:M2SVidNoFullAttention",
    },
    entry_point_group="stereobench.methods",
)
