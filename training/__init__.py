"""The learning loop: training sets from labelled catalogs and vetted feedback, a trainable CPU
model, a VLM fine-tuning export, and the evaluation gate before a model version ships
(issue 13). Its own folder because it is neither the product core nor a pipeline: it reads
predictions and labels offline and writes datasets and model versions."""
