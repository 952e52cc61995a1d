"""From camera-trap photographs to an ImageFolder: detector output, labels, box selection and cropping, grouped
leakage-free splits."""
