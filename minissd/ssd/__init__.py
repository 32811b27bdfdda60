"""The SSD model: VGG16 base, extra layers, multibox heads, MultiBox loss, detection output."""
