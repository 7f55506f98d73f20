"""The gateway's eyes: camera capture, the smoke/fire detector, video confirmation.

Public interface (run time needs only onnxruntime, numpy and OpenCV; torch is
used by ``python -m vision.train`` alone):

* ``vision.detector.Detector.load(path=None, threads=1)`` and
  ``Detector.detect(frame_bgr) -> FrameResult`` (image-level fire/smoke scores,
  regions in frame pixels).
* ``vision.camera.CameraWorker(cam, detector, out, clock)``: one Part per
  camera; puts confirmed ``VideoDetection`` and camera-fault ``StateChange``
  observations on ``out``.
* ``vision.vote.Vote``: the pure confirmation vote, per camera and class.
* ``python -m vision.evaluate``: precision/recall/ROC AUC on the held-back split.

One detector (one onnxruntime session) serves every camera; sessions are
thread-safe.
"""
