# Dataflow's --setup_file needs a setup.py; everything else lives in setup.cfg.
import setuptools

setuptools.setup()
