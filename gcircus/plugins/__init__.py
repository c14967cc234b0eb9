"""Plugins: Circus's CircusPlugin API (a separate process, run by gcircus-plugin), native plugins (greenlets inside
gcircusd) and the PluginManager that runs a config's `[plugin:NAME]` sections."""
from gcircus.plugins.base import CircusPlugin, NativePlugin, cfg_to_str, split_topic, str_to_cfg
from gcircus.plugins.manager import BUILTINS, PluginManager, load_plugin_class

__all__ = ["BUILTINS", "CircusPlugin", "NativePlugin", "PluginManager", "cfg_to_str", "load_plugin_class",
           "split_topic", "str_to_cfg"]
