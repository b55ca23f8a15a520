"""The source-shortcut audit: can the model be telling the hospital rather than the disease?

The pieces, by job:

- :mod:`~chestaid.audit.masks`: the lung prior (two ellipses, not a segmentation) and
  the border band;
- :mod:`~chestaid.audit.text_marks`: burned-in text and markers near the frame's edge;
- :mod:`~chestaid.audit.detectability`: how well a simple classifier tells the source
  from a region (part a);
- :mod:`~chestaid.audit.cam_share`: Grad-CAM mass outside the lung prior (part b);
- :mod:`~chestaid.audit.variants`, :mod:`~chestaid.audit.model_scoring` and
  :mod:`~chestaid.audit.masked_metrics`: the model on masked images (part c);
- :mod:`~chestaid.audit.statements`: what the figures cannot show (part d);
- :mod:`~chestaid.audit.sources`, :mod:`~chestaid.audit.bundle_cases`: reading data
  and bundles; :mod:`~chestaid.audit.report` and :mod:`~chestaid.audit.run`: the report.
"""
