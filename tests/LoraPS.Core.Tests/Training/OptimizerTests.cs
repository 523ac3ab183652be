using LoraPS.Adapters;
using LoraPS.Tests.Adapters;
using LoraPS.Training;
using TorchSharp;
using Parameter = TorchSharp.Modules.Parameter;
using Xunit;
using static LoraPS.Tests.Adapters.PeftModelTestFiles;
using static TorchSharp.torch;

namespace LoraPS.Tests.Training;

/// <summary>
/// The optimizers against torch: three AdamW steps on the tiny-llama LoRA fixture reproduce PEFT's parameters and losses
/// (tests/fixtures/peft/tiny-llama-lora-train, torch 1.13 AdamW lr 1e-3, wd 0), and SGD/AdamW against hand-computed
/// torch formulas; state saved and loaded continues identically.
/// </summary>
[Collection(TrainingCollection.Name)]
public class OptimizerTests
{
    [Theory]
    [InlineData("tiny-llama-lora", 1e-5)]
    // DoRA: Adam's first step is ≈ ±lr wherever |g| ≫ ε, so gradient rounding (≤ 1e-5 in PeftModelGradientTests) on
    // near-zero lora_B gradients is amplified; the optimizer alone matches to 1e-7 (OneAdamWStepFromTheFixtureGradient).
    [InlineData("tiny-llama-dora", 5e-5)]
    [InlineData("tiny-bert-lora", 1e-5)]
    public void ThreeAdamWStepsReproduceTorch(string variant, double atol)
    {
        using var loaded = LoadBase(ModelOf(variant));
        var set = new LoraAdapterSet(loaded.Model);
        set.Load(AdapterTestFiles.PeftAdapterDir(variant), trainable: true);
        using var scope = NewDisposeScope();
        var train = ReadAll(AdapterTestFiles.Fixture("peft", variant + "-train", "train.safetensors"));
        var r = Reference(ModelOf(variant));
        var parameters = PeftParameters(set, "default");
        using var optimizer = new AdamWOptimizer(parameters.Select(kv => (kv.Key, kv.Value)).ToList(), learningRate: 1e-3, weightDecay: 0.0);

        var losses = new List<float>();
        for (int step = 1; step <= 3; step++)
        {
            optimizer.ZeroGrad();
            using var stepScope = NewDisposeScope();
            var loss = loaded.Model.ComputeLoss(loaded.Model.Forward(r["input_ids"], r["attention_mask"]), r["labels"]);
            losses.Add(loss.item<float>());
            loss.backward();
            optimizer.Step();
            if (step == 1)
                foreach (var (key, p) in parameters) TensorAssert.Close(train["step1." + key], p, atol, "step1 " + key);
        }
        var expected = train["losses_before_step"].data<float>().ToArray();
        for (int i = 0; i < 3; i++) Assert.Equal(expected[i], losses[i], 1e-5);
        foreach (var (key, p) in parameters) TensorAssert.Close(train["step3." + key], p, atol, "step3 " + key);
        Assert.Equal(train["loss_after_last_step"].item<float>(), PeftModelTestFiles.Loss(loaded.Model, r), 1e-5);
        Assert.Equal(3, optimizer.StepCount);
    }

    [Theory]
    [InlineData("tiny-llama-lora")]
    [InlineData("tiny-llama-dora")]
    [InlineData("tiny-bert-lora")]
    public void OneAdamWStepFromTheFixtureGradient(string variant)
    {
        using var scope = NewDisposeScope();
        var train = ReadAll(AdapterTestFiles.Fixture("peft", variant + "-train", "train.safetensors"));
        var keys = train.Keys.Where(k => k.StartsWith("step0.", StringComparison.Ordinal)).Select(k => k["step0.".Length..]).ToList();
        var parameters = keys.Select(k => (k, new Parameter(train["step0." + k].clone()))).ToList();
        using var optimizer = new AdamWOptimizer(parameters, learningRate: 1e-3, weightDecay: 0.0);
        foreach (var (k, p) in parameters) p.grad = train["grad_step1." + k].clone();
        optimizer.Step();
        foreach (var (k, p) in parameters) TensorAssert.Close(train["step1." + k], p, 1e-7, "step1 " + k);
    }

    [Fact]
    public void AdamWMatchesTheFormulaWithWeightDecay()
    {
        using var scope = NewDisposeScope();
        var generator = new Generator(5);
        var p = new Parameter(randn(4, 3, generator: generator));
        var start = p.detach().clone();
        var grads = Enumerable.Range(0, 3).Select(_ => randn(4, 3, generator: generator)).ToList();
        using var optimizer = new AdamWOptimizer([("w", p)], learningRate: 0.1, beta1: 0.8, beta2: 0.9, epsilon: 1e-6, weightDecay: 0.05);

        // The textbook update in float64.
        var x = start.to(ScalarType.Float64);
        var m = zeros_like(x);
        var v = zeros_like(x);
        for (int t = 1; t <= 3; t++)
        {
            p.grad = grads[t - 1].clone();
            optimizer.Step();
            var g = grads[t - 1].to(ScalarType.Float64);
            x = x * (1 - 0.1 * 0.05);
            m = 0.8 * m + 0.2 * g;
            v = 0.9 * v + 0.1 * g * g;
            x = x - 0.1 / (1 - Math.Pow(0.8, t)) * m / (v.sqrt() / Math.Sqrt(1 - Math.Pow(0.9, t)) + 1e-6);
        }
        TensorAssert.Close(x, p, 2e-6, "AdamW");
        TensorAssert.Close(m, optimizer.State["w.exp_avg"], 1e-6, "exp_avg");
        TensorAssert.Close(v, optimizer.State["w.exp_avg_sq"], 1e-6, "exp_avg_sq");
    }

    [Theory]
    [InlineData(0.0, 0.0, 0.0, false)]
    [InlineData(0.9, 0.0, 0.01, false)]
    [InlineData(0.9, 0.1, 0.0, false)]
    [InlineData(0.9, 0.0, 0.01, true)]
    public void SgdMatchesTorchSemantics(double momentum, double dampening, double weightDecay, bool nesterov)
    {
        using var scope = NewDisposeScope();
        var generator = new Generator(9);
        var p = new Parameter(randn(5, generator: generator));
        var x = p.detach().to(ScalarType.Float64);
        Tensor? buffer = null;
        using var optimizer = new SgdOptimizer([("w", p)], learningRate: 0.05, momentum, dampening, weightDecay, nesterov);
        for (int t = 0; t < 4; t++)
        {
            var g32 = randn(5, generator: generator);
            p.grad = g32.clone();
            optimizer.Step();
            var d = g32.to(ScalarType.Float64) + weightDecay * x;
            if (momentum != 0)
            {
                buffer = buffer is null ? d.clone() : momentum * buffer + (1 - dampening) * d;
                d = nesterov ? d + momentum * buffer : buffer;
            }
            x = x - 0.05 * d;
        }
        TensorAssert.Close(x, p, 1e-6, "SGD");
        Assert.Equal(momentum != 0, optimizer.State.ContainsKey("w.momentum_buffer"));
    }

    [Theory]
    [InlineData(OptimizerKind.AdamW)]
    [InlineData(OptimizerKind.Sgd)]
    public void SavedStateContinuesBitForBit(OptimizerKind kind)
    {
        using var folder = new TempFolder();
        using var scope = NewDisposeScope();
        var options = new OptimizerOptions { Kind = kind, LearningRate = 0.01, Momentum = 0.9 };
        var grads = Enumerable.Range(0, 4).Select(i => randn(3, 2, generator: new Generator((ulong)i))).ToList();
        var a = new Parameter(ones(3, 2));
        var b = new Parameter(ones(3, 2));
        using var first = Optimizer.Create([("w", a)], options);
        for (int t = 0; t < 2; t++) { a.grad = grads[t].clone(); first.Step(); }
        var path = folder.Sub("optimizer.safetensors");
        first.Save(path);
        using (no_grad()) b.copy_(a);
        using var second = Optimizer.Create([("w", b)], options);
        second.Load(path);
        Assert.Equal(2, second.StepCount);
        for (int t = 2; t < 4; t++)
        {
            a.grad = grads[t].clone(); first.Step();
            b.grad = grads[t].clone(); second.Step();
        }
        TensorAssert.Equal(a, b, "continued parameters");
        foreach (var (key, state) in first.State) TensorAssert.Equal(state, second.State[key], key);
    }

    [Fact]
    public void LoadRejectsOtherParametersAndOptimizers()
    {
        using var folder = new TempFolder();
        using var scope = NewDisposeScope();
        var p = new Parameter(ones(2));
        using var adam = new AdamWOptimizer([("w", p)]);
        p.grad = ones(2);
        adam.Step();
        var path = folder.Sub("state.safetensors");
        adam.Save(path);
        using var sgd = new SgdOptimizer([("w", p)]);
        Assert.Contains("AdamWOptimizer state", Assert.Throws<InvalidDataException>(() => sgd.Load(path)).Message);
        using var other = new AdamWOptimizer([("v", p)]);
        Assert.Contains("'w', which is not a trainable parameter", Assert.Throws<InvalidDataException>(() => other.Load(path)).Message);
        using var shaped = new AdamWOptimizer([("w", new Parameter(ones(3)))]);
        Assert.Contains("shape [2]", Assert.Throws<InvalidDataException>(() => shaped.Load(path)).Message);
        Assert.Throws<ArgumentException>(() => new AdamWOptimizer([]));
        Assert.Throws<ArgumentException>(() => new SgdOptimizer([("w", p)], nesterov: true));
    }
}

/// <summary>
/// Training tests reseed torch's global generator (dropout draws from it), so they run alone, not beside tests that
/// seed and draw from it themselves.
/// </summary>
[CollectionDefinition(Name, DisableParallelization = true)]
public sealed class TrainingCollection
{
    public const string Name = "Training (global RNG)";
}
