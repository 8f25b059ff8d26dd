"""The bottom layer: what every other package may import (errors, typed keys, registries), importing none of them."""
