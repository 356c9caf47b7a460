"""Derived test images from ../shared/data/photos (altered versions: crops and one downscale).

Writes into the folder given as argv[2] (default /tmp/ddpm-photos):
  flower_768x512.png     rgb8bit_flower_foveon.png downscaled (Lanczos) to 768x512, for timings
  flower_crop_301x203.png   odd-size RGB crop
  artificial_crop_257x189.png odd-size synthetic crop (text/graphics)
  fireworks_crop_233x171.png  odd-size greyscale crop
"""
import os
import sys

from PIL import Image

src = sys.argv[1] if len(sys.argv) > 1 else "../shared/data/photos"
out = sys.argv[2] if len(sys.argv) > 2 else "/tmp/ddpm-photos"
os.makedirs(out, exist_ok=True)
flower = Image.open(os.path.join(src, "rgb8bit_flower_foveon.png")).convert("RGB")
flower.resize((768, 512), Image.LANCZOS).save(os.path.join(out, "flower_768x512.png"))
flower.crop((1000, 600, 1301, 803)).save(os.path.join(out, "flower_crop_301x203.png"))
art = Image.open(os.path.join(src, "rgb8bit_artificial.png")).convert("RGB")
art.crop((1200, 900, 1457, 1089)).save(os.path.join(out, "artificial_crop_257x189.png"))
fw = Image.open(os.path.join(src, "gray8bit_fireworks.png"))
fw.crop((1400, 1000, 1633, 1171)).save(os.path.join(out, "fireworks_crop_233x171.png"))
print("wrote", sorted(os.listdir(out)))
