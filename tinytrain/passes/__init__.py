from .training import Step, TrainConfig, TrainingProgram, build_training_program, select_trainable

__all__ = ["Step", "TrainConfig", "TrainingProgram", "build_training_program", "select_trainable"]
