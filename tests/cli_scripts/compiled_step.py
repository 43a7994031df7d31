"""A compiled function called with two batch sizes, then after model.eval()."""
import ember

model = ember.nn.Sequential(ember.nn.Linear(3, 2), ember.nn.Dropout(0.5))


@ember.compile
def step(x):
    return model(x).sum()


for _ in range(3):
    step(ember.ones(4, 3))
step(ember.ones(6, 3))
model.eval()
step(ember.ones(4, 3))
