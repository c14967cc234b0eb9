"""Packaging: the metadata lives in setup.cfg. This file adds one build step: gcircus-launch, a small C program
(gcircus/native/launch.c) that a child runs between its fork and its command when it needs a parent-death signal or
a cgroup (see gcircus/launcher.py).

It is built like an optional extension module, so pip builds it wherever a C compiler is present, in place for an
editable install and into the wheel otherwise, and a machine without a compiler still installs gcircus: gcircusd then
uses util-linux's setpriv and /bin/sh for the same steps, at about twice the CPU per spawn, and says so in its log.
"""
import os

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext
from setuptools.errors import LinkError

LAUNCHER = Extension("gcircus.native.gcircus_launch", sources=["gcircus/native/launch.c"], optional=True)
LAUNCHER_FILE = "gcircus-launch"


class BuildExtWithLauncher(build_ext):
    """build_ext that links the launcher as an executable named gcircus-launch instead of a Python module."""

    def get_ext_filename(self, fullname):
        *package, name = fullname.split(".")  # distutils asks with the full name and with the last part alone
        if name == LAUNCHER.name.rpartition(".")[2]:
            return os.path.join(*package, LAUNCHER_FILE)
        return super().get_ext_filename(fullname)

    def build_extension(self, ext):
        if ext.name != LAUNCHER.name:
            return super().build_extension(ext)
        target = self.get_ext_fullpath(ext.name)
        objects = self.compiler.compile(ext.sources, output_dir=self.build_temp, extra_postargs=["-O2", "-Wall"])
        try:
            # Static: no dynamic loader at each exec, a measurable part of so small a program's start.
            self.compiler.link_executable(objects, os.path.basename(target), output_dir=os.path.dirname(target),
                                          extra_postargs=["-static", "-s"])
        except LinkError:  # no static libc on this machine: the dynamic program does the same job
            self.compiler.link_executable(objects, os.path.basename(target), output_dir=os.path.dirname(target),
                                          extra_postargs=["-s"])


setup(ext_modules=[LAUNCHER], cmdclass={"build_ext": BuildExtWithLauncher})
