"""Ground Truth video labels to MOT17/COCO, and SageMaker training/tuning launch."""
