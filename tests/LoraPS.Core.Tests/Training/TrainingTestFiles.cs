using LoraPS.Adapters;
using LoraPS.Data;
using LoraPS.Models;
using LoraPS.Tests.Adapters;
using LoraPS.Tests.Data;
using LoraPS.Tests.Models;
using LoraPS.Training;
using static TorchSharp.torch;

namespace LoraPS.Tests.Training;

/// <summary>stories260K with a fresh adapter, small arithmetic data, and helpers for the trainer tests.</summary>
internal static class TrainingTestFiles
{
    /// <summary>stories260K with a seeded rank-4 adapter on every linear layer.</summary>
    public static LoraModel Stories(double dropout = 0.1, Precision precision = Precision.FP32, bool withAdapter = true)
    {
        var model = LoraModel.Load(ModelTestFiles.Stories260K, precision);
        if (withAdapter)
            model.Adapters.Add("default", new LoraConfig { Rank = 4, Alpha = 8, Dropout = dropout, TargetModules = ModuleSelection.AllLinear }, seed: 7);
        return model;
    }

    /// <summary>The first <paramref name="count"/> two-digit additions, a quarter held out for validation.</summary>
    public static PreparedData Arithmetic(LoraModel model, int count = 24, double validationFraction = 0.25)
    {
        var all = DatasetReader.ReadFile(DataFixtures.Arithmetic("two_digit_addition"));
        var subset = all.WithExamples(all.Examples.Take(count).ToList());
        return DataPreparation.Prepare(subset, model.Tokenizer, new DataPreparationOptions { ValidationFraction = validationFraction });
    }

    /// <summary>Language-modelling data of random token sequences, all of length <paramref name="length"/>.</summary>
    public static PreparedData EqualLength(int count, int length, int vocab, ulong seed)
    {
        var generator = new TorchSharp.torch.Generator(seed);
        var examples = Enumerable.Range(0, count).Select(_ =>
        {
            using var ids = randint(3, vocab, [length], generator: generator, dtype: ScalarType.Int64);
            var array = ids.data<long>().ToArray();
            return new TokenizedExample(array, (long[])array.Clone(), 0);
        }).ToList();
        return new PreparedData(DatasetFormat.Text, null, [], new TokenizedDataset(examples), [], null, 0, "equal-length-" + seed);
    }

    public static TrainingOptions Options(string folder) => new()
    {
        OutputDirectory = folder,
        MaxSteps = 6,
        GlobalBatchSize = 4,
        MicroBatchSize = 2,
        Optimizer = new OptimizerOptions { LearningRate = 5e-3 },
        Schedule = new LearningRateSchedule { WarmupSteps = 2 },
        EvalInterval = 0,
        EvaluateAtEnd = false,
        SaveInterval = 0,
    };

    /// <summary>Every tensor of a PEFT adapter folder's weights file.</summary>
    public static Dictionary<string, Tensor> AdapterTensors(string folder) =>
        PeftModelTestFiles.ReadAll(Path.Combine(folder, LoraAdapterSet.WeightsFileName));

    public static List<double> Losses(string runFolder) =>
        File.ReadAllLines(Path.Combine(runFolder, "metrics.jsonl"))
            .Select(l => System.Text.Json.JsonDocument.Parse(l).RootElement.GetProperty("loss").GetDouble()).ToList();
}

/// <summary>Calls back on the reporting thread at once (System.Progress posts to a synchronization context).</summary>
internal sealed class SyncProgress<T>(Action<T> report) : IProgress<T>
{
    public void Report(T value) => report(value);
}
