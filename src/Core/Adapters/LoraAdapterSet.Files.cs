using LoraPS.Checkpoints;
using TorchSharp;
using static TorchSharp.torch;

namespace LoraPS.Adapters;

/// <summary>PEFT's adapter folders: <c>save_pretrained</c> and <c>load_adapter</c>.</summary>
public sealed partial class LoraAdapterSet
{
    /// <summary>PEFT's <c>SAFETENSORS_WEIGHTS_NAME</c>.</summary>
    public const string WeightsFileName = "adapter_model.safetensors";

    /// <summary>PEFT's legacy pickle file, refused with advice.</summary>
    public const string PickleWeightsFileName = "adapter_model.bin";

    /// <summary>Test seam: runs on the finished temporary folder just before a save moves it into place.</summary>
    internal Action<string>? BeforeCommit { get; set; }

    /// <summary>
    /// Saves adapters in PEFT's layout (<c>save_pretrained</c>): the adapter named <c>default</c> goes into
    /// <paramref name="directory"/> itself, any other adapter into <c>directory/&lt;name&gt;</c>. Each folder gets
    /// <c>adapter_config.json</c> and <c>adapter_model.safetensors</c> (PEFT key names, lora_A (r, in), lora_B (out, r),
    /// F32, metadata <c>format = pt</c>; modules_to_save under their plain module path).
    /// </summary>
    /// <remarks>
    /// Both files are written into a temporary folder first and then renamed into place, so a failure leaves the old
    /// adapter (or nothing); other files in the folder are left alone. Every target is checked before anything is
    /// written. PEFT's model card (README.md) is not written.
    /// <para>
    /// An adapter whose initialisation rewrote the base weight (PiSSA, OLoRA, LoRA-GA added in this session) only
    /// reproduces the trained model on that rewritten base. By default it is therefore saved converted for the
    /// original base, as PEFT's <c>path_initial_model_for_weight_conversion</c> does: rank 2r, A' = [A ; A₀],
    /// B' = [B | −B₀], α doubled (×√2 under rsLoRA), <c>init_lora_weights = true</c>. <paramref name="unconverted"/>
    /// saves it as it is instead (rank r, for the rewritten base).
    /// </para>
    /// </remarks>
    /// <param name="directory">The save folder; created if needed.</param>
    /// <param name="name">One adapter to save; null saves them all.</param>
    /// <param name="force">Overwrite adapter files that are already there.</param>
    /// <param name="unconverted">Save adapters with a rewritten base weight as they are, not converted for the original base.</param>
    /// <returns>The folders written, one per adapter.</returns>
    /// <exception cref="IOException">A target folder already holds an adapter and <paramref name="force"/> is false.</exception>
    public IReadOnlyList<string> Save(string directory, string? name = null, bool force = false, bool unconverted = false)
    {
        ArgumentException.ThrowIfNullOrEmpty(directory);
        var names = name is null ? _order.ToList() : [Known(name)];
        if (names.Count == 0) throw new InvalidOperationException("There is no adapter to save; add or load one first.");
        var root = Path.GetFullPath(directory);
        if (File.Exists(root)) throw new IOException($"'{root}' is a file; give a folder to save the adapter into.");

        var folders = names.Select(n => (Name: n, Folder: AdapterFolder(root, n))).ToList();
        foreach (var (_, folder) in folders)
        {
            if (!force && HoldsAdapter(folder))
                throw new IOException($"'{folder}' already holds an adapter ({PeftAdapterConfig.FileName} or adapter weights); pass Force to overwrite it.");
        }
        foreach (var (adapter, folder) in folders) SaveOne(adapter, folder, convert: !unconverted && SavesConverted(adapter));
        return folders.Select(f => f.Folder).ToList();
    }

    /// <summary>PEFT: <c>default</c> in the folder itself, others in a subfolder named after them.</summary>
    public static string AdapterFolder(string root, string name) =>
        name == PeftStateDictKeys.DefaultAdapterName ? root : Path.Combine(root, name);

    /// <summary>True when <paramref name="folder"/> already holds an adapter config or adapter weights.</summary>
    public static bool HoldsAdapter(string folder) =>
        File.Exists(Path.Combine(folder, PeftAdapterConfig.FileName))
        || File.Exists(Path.Combine(folder, WeightsFileName))
        || File.Exists(Path.Combine(folder, PickleWeightsFileName));

    void SaveOne(string name, string folder, bool convert)
    {
        using var scope = NewDisposeScope();
        var adapter = _adapters[name];
        var config = adapter.Config.BaseModelNameOrPath is null ? adapter.Config with { BaseModelNameOrPath = BaseModelNameOrPath } : adapter.Config;
        var tensors = AdapterTensors(name);
        if (convert) (config, tensors) = ConvertedForOriginalBase(name, config, tensors);
        var json = PeftAdapterConfig.ToJson(config);
        AtomicFolder.WriteFiles(folder, temp =>
        {
            SafetensorsWriter.Write(Path.Combine(temp, WeightsFileName), tensors);
            File.WriteAllText(Path.Combine(temp, PeftAdapterConfig.FileName), json);
            // The config goes into place last: a folder with a config always has matching weights beside it.
            return [WeightsFileName, PeftAdapterConfig.FileName];
        }, BeforeCommit);
    }

    /// <summary>The adapter's tensors under PEFT's file keys (live parameters, not copies).</summary>
    List<KeyValuePair<string, Tensor>> AdapterTensors(string name)
    {
        var adapter = _adapters[name];
        var tensors = new List<KeyValuePair<string, Tensor>>();
        foreach (var target in adapter.Targets) tensors.AddRange(_layers[target.Path].PeftTensors(target.Path, name));
        foreach (var path in adapter.SavedModules)
        {
            // PEFT saves <path>.modules_to_save.<adapter>.<param> as <path>.<param>.
            foreach (var (param, tensor) in _wrappers[path].CopyParameters(name))
                tensors.Add(new(PeftStateDictKeys.Prefix + path + "." + param, tensor));
        }
        foreach (var (key, parameter) in BiasParameters(adapter.Config.Bias, adapter.Targets.Select(t => t.Path).ToHashSet(), adapter.SavedModules))
            tensors.Add(new(key, parameter));
        var duplicate = tensors.GroupBy(t => t.Key).FirstOrDefault(g => g.Count() > 1);
        if (duplicate is not null) throw new InvalidOperationException($"Internal error: adapter '{name}' would save '{duplicate.Key}' twice.");
        return tensors;
    }

    /// <summary>
    /// Loads a PEFT adapter folder (<c>adapter_config.json</c> + <c>adapter_model.safetensors</c>) as
    /// <paramref name="name"/> (PEFT <c>load_adapter</c>). The first adapter becomes active; later ones start inactive.
    /// </summary>
    /// <remarks>
    /// <para>
    /// Validation is strict and happens before the model is touched: every tensor the config implies for this model
    /// must be in the file with the right shape (rank from r/rank_pattern, in/out from the layer), and the file may hold
    /// nothing else. Unknown config keys are ignored and missing ones take PEFT's defaults. A file that fails leaves
    /// the model unchanged.
    /// </para>
    /// <para>
    /// The base weights are never rewritten on load, whatever <c>init_lora_weights</c> says: a PiSSA/OLoRA adapter
    /// belongs on the residual base model it was trained on. Biases saved with <c>bias = all/lora_only</c> are copied
    /// into the base model (as PEFT does) and stay there when the adapter is deleted.
    /// </para>
    /// </remarks>
    /// <param name="directory">The adapter folder.</param>
    /// <param name="name">The name to give it (default <c>default</c>).</param>
    /// <param name="trainable">False (PEFT's default) loads it for inference: it never gets gradients.</param>
    /// <exception cref="DirectoryNotFoundException">No such folder.</exception>
    /// <exception cref="FileNotFoundException">The folder holds no adapter_config.json.</exception>
    /// <exception cref="AdapterFileException">Only a pickle, a corrupt or truncated file, missing or unexpected tensors,
    /// wrong shapes, or a config that does not fit this model.</exception>
    /// <exception cref="NotSupportedException">The config uses a PEFT feature LoraPS does not implement.</exception>
    public LoraAdapterInfo Load(string directory, string name = PeftStateDictKeys.DefaultAdapterName, bool trainable = false)
    {
        ArgumentException.ThrowIfNullOrEmpty(directory);
        CheckNewName(name);
        ThrowIfMerged($"load adapter '{name}'");
        var folder = Path.GetFullPath(directory);
        if (!Directory.Exists(folder))
            throw new DirectoryNotFoundException($"The adapter folder '{folder}' does not exist.");
        var configPath = Path.Combine(folder, PeftAdapterConfig.FileName);
        var weightsPath = Path.Combine(folder, WeightsFileName);
        if (!File.Exists(configPath))
            throw new FileNotFoundException($"'{folder}' holds no {PeftAdapterConfig.FileName}; a PEFT adapter folder has {PeftAdapterConfig.FileName} and {WeightsFileName}.", configPath);
        if (!File.Exists(weightsPath))
        {
            var pickle = Path.Combine(folder, PickleWeightsFileName);
            if (File.Exists(pickle))
                throw new AdapterFileException(pickle,
                    $"'{pickle}' is a PyTorch pickle, which LoraPS never reads: unpickling can run arbitrary code. Convert it to safetensors once in Python " +
                    "(import torch; from safetensors.torch import save_file; save_file(torch.load('adapter_model.bin', weights_only=True), 'adapter_model.safetensors', metadata={'format': 'pt'})) and load the folder again.");
            throw new AdapterFileException(weightsPath, $"'{folder}' has {PeftAdapterConfig.FileName} but no {WeightsFileName}; the adapter is incomplete. Save or download it again.");
        }

        var config = ReadConfig(configPath);
        AdapterPlan plan;
        try
        {
            plan = Plan(config, strictModulesToSave: false);
        }
        catch (ArgumentException e)
        {
            throw new AdapterFileException(configPath, $"'{configPath}' does not fit this {Model.Config.ModelType} model: {e.Message}", inner: e);
        }
        catch (NotSupportedException e)
        {
            throw new NotSupportedException($"'{configPath}': {e.Message}", e);
        }

        using var scope = NewDisposeScope();
        var tensors = ReadValidated(weightsPath, plan);
        var biases = BiasParameters(plan.Config.Bias, plan.Targets.Select(t => t.Path).ToHashSet(), plan.SavedModules).ToList();
        Inject(name, plan,
            (layer, target) =>
            {
                Tensor Get(string param) => tensors[PeftStateDictKeys.ToPeft(target.Path, param)];
                var magnitude = target.Options.UseDora ? Get($"lora_magnitude_vector.{name}.weight") : null;
                layer.AddAdapterWithWeights(name, target.Options, Get($"lora_A.{name}.weight"), Get($"lora_B.{name}.weight"), magnitude);
            },
            (path, wrapper) =>
            {
                using var noGrad = no_grad();
                foreach (var (param, tensor) in wrapper.CopyParameters(name))
                    tensor.copy_(tensors[PeftStateDictKeys.Prefix + path + "." + param]);
            });
        using (no_grad())
        {
            foreach (var (key, parameter) in biases) parameter.copy_(tensors[key]);
        }
        _adapters[name].Frozen = !trainable;
        Sync();
        return Get(name);
    }

    static LoraConfig ReadConfig(string configPath)
    {
        LoraConfig config;
        try
        {
            config = PeftAdapterConfig.Read(configPath);
        }
        catch (InvalidDataException e)
        {
            throw new AdapterFileException(configPath, e.Message, inner: e);
        }
        if (config.LoraBias)
            throw new NotSupportedException($"'{configPath}': lora_bias is true, but LoraPS's LoRA layers have no bias on lora_B.");
        return config;
    }

    /// <summary>One tensor the adapter file must hold.</summary>
    sealed record ExpectedTensor(string Key, long[] Shape, string Meaning);

    /// <summary>
    /// Every tensor <paramref name="plan"/> implies, with its shape: lora_A (r, in), lora_B (out, r), DoRA's magnitude
    /// (out), the modules_to_save copies and the saved biases.
    /// </summary>
    List<ExpectedTensor> ExpectedTensors(AdapterPlan plan)
    {
        const string any = PeftStateDictKeys.DefaultAdapterName;
        var expected = new List<ExpectedTensor>();
        foreach (var t in plan.Targets)
        {
            string where = $"LoRA on '{t.Path}' ({t.InFeatures} -> {t.OutFeatures}) with r={t.Rank}";
            expected.Add(new(PeftStateDictKeys.ToPeft(t.Path, $"lora_A.{any}.weight"), [t.Rank, t.InFeatures], $"{where} needs lora_A as [r, in]"));
            expected.Add(new(PeftStateDictKeys.ToPeft(t.Path, $"lora_B.{any}.weight"), [t.OutFeatures, t.Rank], $"{where} needs lora_B as [out, r]"));
            if (t.Options.UseDora)
                expected.Add(new(PeftStateDictKeys.ToPeft(t.Path, $"lora_magnitude_vector.{any}.weight"), [t.OutFeatures], $"DoRA on '{t.Path}' needs a magnitude per output"));
        }
        foreach (var path in plan.SavedModules)
        {
            var module = _wrappers.TryGetValue(path, out var wrapper) ? wrapper.OriginalModule : Model.GetModule(path);
            foreach (var (param, p) in module.named_parameters())
                expected.Add(new(PeftStateDictKeys.Prefix + path + "." + param, p.shape, $"modules_to_save '{path}' is saved whole"));
        }
        foreach (var (key, p) in BiasParameters(plan.Config.Bias, plan.Targets.Select(t => t.Path).ToHashSet(), plan.SavedModules))
            expected.Add(new(key, p.shape, $"bias = {plan.Config.Bias.ToPeftName()} saves this bias"));
        return expected;
    }

    /// <summary>
    /// Opens the adapter file, checks its keys and shapes against <paramref name="plan"/>, and reads the tensors into
    /// the caller's dispose scope.
    /// </summary>
    Dictionary<string, Tensor> ReadValidated(string weightsPath, AdapterPlan plan)
    {
        SafetensorsFile file;
        try
        {
            file = SafetensorsFile.Open(weightsPath);
        }
        catch (CheckpointFormatException e)
        {
            throw new AdapterFileException(weightsPath, $"'{weightsPath}' is not a readable safetensors file ({e.Problem}); it may be truncated or corrupt. Save or download the adapter again.", inner: e);
        }
        using (file)
        {
            var expected = ExpectedTensors(plan);
            var expectedKeys = expected.Select(e => e.Key).ToHashSet(StringComparer.Ordinal);
            // PEFT's bias = "all" also saves the frozen original of a modules_to_save module; it is never used.
            var present = file.Entries.Where(e => !e.Name.Contains(".original_module.", StringComparison.Ordinal)).ToDictionary(e => e.Name, StringComparer.Ordinal);

            var missing = expected.Where(e => !present.ContainsKey(e.Key)).ToList();
            var unexpected = present.Keys.Where(k => !expectedKeys.Contains(k)).Order(StringComparer.Ordinal).ToList();
            if (missing.Count > 0)
            {
                var hint = unexpected.Count > 0 ? $" It has {unexpected.Count} key(s) this config does not ask for instead, e.g. {Join(unexpected)}." : "";
                throw new AdapterFileException(weightsPath,
                    $"'{weightsPath}' lacks {missing.Count} tensor(s) that adapter_config.json implies for this model: {Join(missing.Select(m => m.Key).ToList())}.{hint} The weights and the config do not belong together, or the adapter was trained for another model.",
                    missing[0].Key);
            }
            if (unexpected.Count > 0)
                throw new AdapterFileException(weightsPath,
                    $"'{weightsPath}' holds {unexpected.Count} tensor(s) that belong to no module its adapter_config.json selects on this model: {Join(unexpected)}. Was it trained for another model, or with other target_modules / modules_to_save?",
                    unexpected[0]);

            foreach (var e in expected)
            {
                var entry = present[e.Key];
                if (entry.DType is not (SafetensorsDType.F32 or SafetensorsDType.F16 or SafetensorsDType.BF16 or SafetensorsDType.F64))
                    throw new AdapterFileException(weightsPath, $"'{e.Key}' in '{weightsPath}' is {entry.DType}; adapter weights must be floating point (F32, F16, BF16).", e.Key);
                if (!entry.Shape.SequenceEqual(e.Shape))
                    throw new AdapterFileException(weightsPath, ShapeMessage(weightsPath, e, entry.Shape, plan), e.Key);
            }
            return expected.ToDictionary(e => e.Key, e => file.ReadTensor(e.Key), StringComparer.Ordinal);
        }
    }

    static string ShapeMessage(string weightsPath, ExpectedTensor e, long[] actual, AdapterPlan plan)
    {
        string Shape(long[] s) => "[" + string.Join(", ", s) + "]";
        var message = $"'{e.Key}' in '{weightsPath}' is {Shape(actual)}, but {e.Meaning} = {Shape(e.Shape)}.";
        bool isLora = e.Key.EndsWith(".lora_A.weight", StringComparison.Ordinal) || e.Key.EndsWith(".lora_B.weight", StringComparison.Ordinal);
        if (isLora && actual.Length == 2)
        {
            bool isA = e.Key.EndsWith(".lora_A.weight", StringComparison.Ordinal);
            long fileRank = isA ? actual[0] : actual[1];
            long otherFile = isA ? actual[1] : actual[0], otherExpected = isA ? e.Shape[1] : e.Shape[0];
            if (otherFile == otherExpected && fileRank != (isA ? e.Shape[0] : e.Shape[1]))
                return message + $" The file has rank {fileRank} where adapter_config.json says r={(isA ? e.Shape[0] : e.Shape[1])}{(plan.Config.RankPattern.Count > 0 ? " (after rank_pattern)" : "")}: the config and the weights do not belong together.";
        }
        return message + " The adapter was trained for a model of another size, or its file was altered.";
    }

    static string Join(IReadOnlyList<string> items) =>
        string.Join(", ", items.Take(8)) + (items.Count > 8 ? $", … ({items.Count} in all)" : "");
}
