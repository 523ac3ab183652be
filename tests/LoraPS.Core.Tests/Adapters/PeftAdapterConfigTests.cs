using System.Text.Json.Nodes;
using LoraPS.Adapters;
using Xunit;

namespace LoraPS.Tests.Adapters;

public class PeftAdapterConfigTests
{
    static readonly string[] Variants =
        ["tiny-llama-lora", "tiny-llama-rslora", "tiny-llama-dora", "tiny-bert-lora", "tiny-bert-rslora", "tiny-bert-dora"];

    public static TheoryData<string> AllVariants() => new(Variants);

    /// <summary>What Python's json.dumps(indent=2, sort_keys=True) printed for the same values (generated with CPython 3).</summary>
    const string ExpectedJson = """
{
  "alora_invocation_tokens": null,
  "alpha_pattern": {
    "v_proj": 2.5
  },
  "arrow_config": null,
  "auto_mapping": null,
  "base_model_name_or_path": "models/stories260K",
  "bias": "lora_only",
  "corda_config": null,
  "ensure_weight_tying": false,
  "eva_config": null,
  "exclude_modules": ".*lm_head",
  "fan_in_fan_out": false,
  "inference_mode": true,
  "init_lora_weights": "pissa_niter_16",
  "layer_replication": null,
  "layers_pattern": "layers",
  "layers_to_transform": [
    0,
    1
  ],
  "loftq_config": {},
  "lora_alpha": 32,
  "lora_bias": false,
  "lora_dropout": 0.05,
  "megatron_config": null,
  "megatron_core": "megatron.core",
  "modules_to_save": [
    "score"
  ],
  "peft_type": "LORA",
  "peft_version": "0.18.1",
  "qalora_group_size": 16,
  "r": 16,
  "rank_pattern": {
    "q_proj": 8
  },
  "revision": null,
  "target_modules": [
    "q_proj",
    "v_proj"
  ],
  "target_parameters": null,
  "task_type": "CAUSAL_LM",
  "trainable_token_indices": null,
  "use_dora": false,
  "use_qalora": false,
  "use_rslora": true
}
""";

    [Fact]
    public void WritesExactlyWhatPeftWrites()
    {
        var config = new LoraConfig
        {
            Rank = 16,
            Alpha = 32,
            Dropout = 0.05,
            TargetModules = ModuleSelection.Names("v_proj", "q_proj"),
            ExcludeModules = ModuleSelection.Regex(".*lm_head"),
            LayersToTransform = [0, 1],
            LayersPattern = ["layers"],
            RankPattern = new Dictionary<string, int> { ["q_proj"] = 8 },
            AlphaPattern = new Dictionary<string, double> { ["v_proj"] = 2.5 },
            Bias = LoraBiasMode.LoraOnly,
            ModulesToSave = ["score"],
            Init = LoraInit.PiSSAFast(16),
            UseRsLora = true,
            TaskType = PeftTaskType.CausalLM,
            BaseModelNameOrPath = "models/stories260K",
        };
        Assert.Equal(ExpectedJson, PeftAdapterConfig.ToJson(config));
        Assert.Equal(config, PeftAdapterConfig.Parse(ExpectedJson));
    }

    [Theory]
    [MemberData(nameof(AllVariants))]
    public void ReadsTheFixtureConfigs(string variant)
    {
        var config = PeftAdapterConfig.Read(AdapterTestFiles.PeftAdapterDir(variant));
        bool llama = variant.StartsWith("tiny-llama", StringComparison.Ordinal);
        Assert.Equal((4, 8.0, 0.0), (config.Rank, config.Alpha, config.Dropout));
        Assert.Equal(
            llama ? ModuleSelection.Names("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj") : ModuleSelection.Names("query", "key", "value", "dense"),
            config.TargetModules);
        Assert.Equal(llama ? PeftTaskType.CausalLM : PeftTaskType.SequenceClassification, config.TaskType);
        Assert.Equal(variant.EndsWith("rslora", StringComparison.Ordinal), config.UseRsLora);
        Assert.Equal(variant.EndsWith("dora", StringComparison.Ordinal) && !variant.EndsWith("rslora", StringComparison.Ordinal), config.UseDora);
        Assert.Equal(LoraInit.Default, config.Init);
        Assert.Equal(LoraBiasMode.None, config.Bias);
        Assert.Equal(llama ? "models/tiny-llama" : "models/tiny-bert", config.BaseModelNameOrPath);
        Assert.Null(config.ModulesToSave);
        Assert.Empty(config.RankPattern);
    }

    /// <summary>
    /// Every key PEFT 0.10 wrote is written again with the same value (target_modules compared as a set: PEFT
    /// writes a Python set), and re-reading what we wrote gives the same config.
    /// </summary>
    [Theory]
    [MemberData(nameof(AllVariants))]
    public void RoundTripsTheFixtureConfigs(string variant)
    {
        var path = Path.Combine(AdapterTestFiles.PeftAdapterDir(variant), PeftAdapterConfig.FileName);
        var original = JsonNode.Parse(File.ReadAllText(path))!.AsObject();
        var config = PeftAdapterConfig.Read(path);
        var written = PeftAdapterConfig.ToJson(config);
        var ours = JsonNode.Parse(written)!.AsObject();

        Assert.Equal(PeftAdapterConfig.WrittenKeys, ours.Select(kv => kv.Key));
        foreach (var (key, value) in original)
        {
            Assert.True(ours.ContainsKey(key), $"missing key {key}");
            if (key == "target_modules")
                Assert.Equal(value!.AsArray().Select(n => (string)n!).Order(), ours[key]!.AsArray().Select(n => (string)n!));
            else
                Assert.True(JsonNode.DeepEquals(value, ours[key]), $"{key}: fixture {value?.ToJsonString()} vs ours {ours[key]?.ToJsonString()}");
        }
        Assert.Equal(config, PeftAdapterConfig.Parse(written));
        Assert.False(written.EndsWith('\n'));
    }

    [Fact]
    public void WritesIntoADirectoryAndReadsItBack()
    {
        var dir = Directory.CreateTempSubdirectory("lorapeft-").FullName;
        try
        {
            var config = new LoraConfig { TargetModules = ModuleSelection.Names("c_attn"), FanInFanOut = true, UseDora = true, Init = LoraInit.Gaussian };
            PeftAdapterConfig.Write(dir, config);
            Assert.True(File.Exists(Path.Combine(dir, "adapter_config.json")));
            Assert.Equal(config, PeftAdapterConfig.Read(dir));
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }

    [Fact]
    public void MissingKeysTakePeftDefaultsAndUnknownKeysAreIgnored()
    {
        var config = PeftAdapterConfig.Parse("""{"peft_type": "LORA", "target_modules": ["q_proj"], "some_future_key": {"x": 1}, "layers_to_transform": 3, "layers_pattern": ["layers", "h"]}""");
        Assert.Equal((8, 8.0, 0.0), (config.Rank, config.Alpha, config.Dropout));
        Assert.Equal(LoraInit.Default, config.Init);
        Assert.Equal([3], config.LayersToTransform);
        Assert.Equal(["layers", "h"], config.LayersPattern);
        Assert.Null(config.TaskType);
    }

    [Fact]
    public void ReadsEveryInitSpelling()
    {
        LoraInit Init(string json) => PeftAdapterConfig.Parse($$"""{"target_modules": "x", "init_lora_weights": {{json}}}""").Init;
        Assert.Equal(LoraInit.Default, Init("true"));
        Assert.Equal(LoraInit.Random, Init("false"));
        Assert.Equal(LoraInit.Gaussian, Init("\"gaussian\""));
        Assert.Equal(LoraInit.PiSSA, Init("\"pissa\""));
        Assert.Equal(LoraInit.PiSSAFast(4), Init("\"pissa_niter_4\""));
        Assert.Equal(LoraInit.OLoRA, Init("\"olora\""));
        var eva = Init("\"eva\"");
        Assert.Equal((LoraInitKind.Other, "eva"), (eva.Kind, eva.ToPeftValue()));
        Assert.Throws<InvalidDataException>(() => Init("\"pissa_niter_x\""));
        Assert.Throws<InvalidDataException>(() => Init("3"));
    }

    [Fact]
    public void ErrorsNameTheFileTheKeyAndTheProblem()
    {
        var badJson = Assert.Throws<InvalidDataException>(() => PeftAdapterConfig.Parse("{\"r\": 8,", "my/adapter_config.json"));
        Assert.Contains("my/adapter_config.json is not valid JSON", badJson.Message);

        var wrongType = Assert.Throws<InvalidDataException>(() => PeftAdapterConfig.Parse("""{"r": "8"}"""));
        Assert.Contains("'r' must be an integer", wrongType.Message);
        Assert.Throws<InvalidDataException>(() => PeftAdapterConfig.Parse("""{"r": 4.5}"""));
        Assert.Throws<InvalidDataException>(() => PeftAdapterConfig.Parse("""{"target_modules": [1, 2]}"""));
        Assert.Throws<InvalidDataException>(() => PeftAdapterConfig.Parse("""{"use_dora": "yes"}"""));
        Assert.Throws<InvalidDataException>(() => PeftAdapterConfig.Parse("""{"rank_pattern": {"q_proj": "x"}}"""));
        Assert.Throws<InvalidDataException>(() => PeftAdapterConfig.Parse("[1]"));
        Assert.Contains("task_type", Assert.Throws<InvalidDataException>(() => PeftAdapterConfig.Parse("""{"task_type": "CAUSAL"}""")).Message);
        Assert.Contains("alpha", Assert.Throws<InvalidDataException>(() => PeftAdapterConfig.Parse("""{"lora_alpha": -1}""")).Message);

        var notLora = Assert.Throws<InvalidDataException>(() => PeftAdapterConfig.Read(AdapterTestFiles.Fixture("lora_ga", "official", "adapter")));
        Assert.Contains("peft_type is 'LORAGA'", notLora.Message);

        Assert.Contains("layer_replication", Assert.Throws<NotSupportedException>(() => PeftAdapterConfig.Parse("""{"layer_replication": [[0, 2]]}""")).Message);
        Assert.Throws<FileNotFoundException>(() => PeftAdapterConfig.Read(Path.Combine(Path.GetTempPath(), "no-such-adapter-dir", "adapter_config.json")));
    }

    [Fact]
    public void RefusesToWriteUnresolvedTargets()
    {
        Assert.Throws<InvalidOperationException>(() => PeftAdapterConfig.ToJson(new LoraConfig()));
        Assert.Throws<InvalidOperationException>(() => PeftAdapterConfig.ToJson(new LoraConfig { TargetModules = ModuleSelection.AllLinear }));
    }

    [Theory]
    [InlineData(0.1, "0.1")]
    [InlineData(0.05, "0.05")]
    [InlineData(1e-5, "1e-05")]
    [InlineData(1e16, "1e+16")]
    [InlineData(1e15, "1000000000000000.0")]
    [InlineData(0.0001, "0.0001")]
    [InlineData(1.0 / 3, "0.3333333333333333")]
    [InlineData(2.0, "2.0")]
    [InlineData(-2.0, "-2.0")]
    [InlineData(0.0, "0.0")]
    [InlineData(1e22, "1e+22")]
    [InlineData(5e-324, "5e-324")]
    [InlineData(1.7976931348623157e308, "1.7976931348623157e+308")]
    [InlineData(123456789012345678.0, "1.2345678901234568e+17")]
    [InlineData(0.30000000000000004, "0.30000000000000004")]
    [InlineData(1.2345e-7, "1.2345e-07")]
    [InlineData(123456789.125, "123456789.125")]
    public void FloatsArePrintedLikePythonRepr(double value, string python)
    {
        Assert.Equal(python, PythonJson.FloatRepr(value));
    }
}
