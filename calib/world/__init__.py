"""The embedded world: a seeded knowledge base (kb), domain writers (domains), the named
sources in the paper's corpora's roles (sources), the evaluation tasks (tasks), and the
world models' recipe and training (model), with the committed weights under model/.

The lowest layer after the foundations: it imports nothing of calib above errors, io
and cache, so every other layer can use the world and none of them is needed to build it.
"""
