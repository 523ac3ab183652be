using LoraPS.Checkpoints;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace LoraPS.Training;

/// <summary>
/// An optimizer over named parameters whose whole state is plain tensors keyed by parameter name, so a checkpoint
/// can save it and a resumed run continue bit for bit.
/// </summary>
/// <remarks>
/// LoraPS implements the updates itself instead of using TorchSharp's <c>torch.optim</c>: those keep their state in
/// native code with no way to read it back exactly, and a resumed run must restore every moment to the bit. The
/// updates follow torch's single-tensor code paths op for op, so the results equal torch's on the same inputs.
/// State tensors are created lazily on a parameter's first gradient, as in torch, and owned by the optimizer.
/// </remarks>
public abstract class Optimizer : IDisposable
{
    readonly Dictionary<string, Tensor> _state = new(StringComparer.Ordinal);
    readonly long[] _steps;
    bool _disposed;

    private protected Optimizer(IReadOnlyList<(string Name, Parameter Parameter)> parameters, double learningRate)
    {
        ArgumentNullException.ThrowIfNull(parameters);
        if (parameters.Count == 0)
            throw new ArgumentException("There are no trainable parameters to optimize; add an adapter (or load one with trainable = true) first.", nameof(parameters));
        var duplicate = parameters.GroupBy(p => p.Name).FirstOrDefault(g => g.Count() > 1);
        if (duplicate is not null) throw new ArgumentException($"The parameter '{duplicate.Key}' is given twice.", nameof(parameters));
        Parameters = parameters;
        LearningRate = learningRate;
        _steps = new long[parameters.Count];
    }

    /// <summary>The parameters in update order, with the names their state is saved under.</summary>
    public IReadOnlyList<(string Name, Parameter Parameter)> Parameters { get; }

    /// <summary>The learning rate of the next <see cref="Step"/>; the trainer sets it from the schedule before each step.</summary>
    public double LearningRate { get; set; }

    /// <summary>How many times <see cref="Step"/> ran.</summary>
    public long StepCount { get; private set; }

    /// <summary>The state tensors by key <c>&lt;parameter&gt;.&lt;state&gt;</c> (live tensors owned by the optimizer).</summary>
    public IReadOnlyDictionary<string, Tensor> State => _state;

    /// <summary>Sets every gradient to zero (torch 1.13's <c>zero_grad(set_to_none=False)</c>).</summary>
    public void ZeroGrad()
    {
        using var scope = NewDisposeScope();
        foreach (var (_, p) in Parameters)
        {
            if (p.grad is { } g) g.zero_();
        }
    }

    /// <summary>
    /// One update of every parameter that has a gradient; parameters without one are skipped and keep their own step
    /// count, as in torch.
    /// </summary>
    public void Step()
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        using var scope = NewDisposeScope();
        using var noGrad = no_grad();
        for (int i = 0; i < Parameters.Count; i++)
        {
            var (name, p) = Parameters[i];
            if (p.grad is not { } grad) continue;
            _steps[i]++;
            Update(name, p, grad, _steps[i]);
        }
        StepCount++;
    }

    /// <summary>
    /// Updates the parameter <paramref name="name"/> (<paramref name="p"/>, gradient <paramref name="grad"/>) in place,
    /// inside no_grad and a dispose scope; <paramref name="step"/> is its own step count, 1 on its first update.
    /// </summary>
    private protected abstract void Update(string name, Parameter p, Tensor grad, long step);

    /// <summary>The state tensor <paramref name="key"/> of a parameter, or null before its first update.</summary>
    private protected Tensor? GetState(string name, string key) => _state.GetValueOrDefault(name + "." + key);

    /// <summary>Stores a new state tensor, owned by the optimizer from now on.</summary>
    private protected Tensor SetState(string name, string key, Tensor value)
    {
        var tensor = value.DetachFromDisposeScope();
        _state[name + "." + key] = tensor;
        return tensor;
    }

    /// <summary>Writes the state to a safetensors file: every state tensor plus each parameter's step count.</summary>
    public void Save(string path)
    {
        using var scope = NewDisposeScope();
        var tensors = new List<KeyValuePair<string, Tensor>>(_state.Select(kv => KeyValuePair.Create(kv.Key, kv.Value)));
        for (int i = 0; i < Parameters.Count; i++) tensors.Add(new(Parameters[i].Name + ".step", tensor(_steps[i])));
        SafetensorsWriter.Write(path, tensors, new Dictionary<string, string>
        {
            ["optimizer"] = GetType().Name,
            ["step_count"] = StepCount.ToString(System.Globalization.CultureInfo.InvariantCulture),
        });
    }

    /// <summary>
    /// Restores the state written by <see cref="Save"/> into this optimizer, which must be over the same parameters
    /// (names and shapes). Tensors go to each parameter's device.
    /// </summary>
    /// <exception cref="InvalidDataException">The file is for another optimizer or other parameters.</exception>
    public void Load(string path)
    {
        using var file = SafetensorsFile.Open(path);
        string Meta(string key) => file.Metadata.TryGetValue(key, out var v) ? v
            : throw new InvalidDataException($"'{path}' has no '{key}' metadata; it is not a LoraPS optimizer state file.");
        if (Meta("optimizer") != GetType().Name)
            throw new InvalidDataException($"'{path}' holds {Meta("optimizer")} state, but this run uses {GetType().Name}.");
        var byName = Parameters.Select((p, i) => (p, i)).ToDictionary(x => x.p.Name, x => x, StringComparer.Ordinal);
        var loaded = new Dictionary<string, Tensor>(StringComparer.Ordinal);
        var steps = new long[Parameters.Count];
        try
        {
            foreach (var entry in file.Entries)
            {
                int dot = entry.Name.LastIndexOf('.');
                var (name, key) = dot < 0 ? (entry.Name, "") : (entry.Name[..dot], entry.Name[(dot + 1)..]);
                if (!byName.TryGetValue(name, out var owner))
                    throw new InvalidDataException($"'{path}' holds state for '{name}', which is not a trainable parameter of this model.");
                using var t = file.ReadTensor(entry.Name);
                if (key == "step")
                {
                    steps[owner.i] = t.item<long>();
                    continue;
                }
                var expected = StateShape(key, owner.p.Parameter);
                if (!t.shape.SequenceEqual(expected))
                    throw new InvalidDataException($"'{path}': '{entry.Name}' has shape [{string.Join(", ", t.shape)}] but this optimizer expects [{string.Join(", ", expected)}] for that parameter.");
                loaded[entry.Name] = t.to(owner.p.Parameter.device).clone().DetachFromDisposeScope();
            }
        }
        catch
        {
            foreach (var t in loaded.Values) t.Dispose();
            throw;
        }
        foreach (var t in _state.Values) t.Dispose();
        _state.Clear();
        foreach (var (k, t) in loaded) _state[k] = t;
        Array.Copy(steps, _steps, steps.Length);
        StepCount = long.Parse(Meta("step_count"), System.Globalization.CultureInfo.InvariantCulture);
    }

    /// <summary>The shape the state <paramref name="key"/> of <paramref name="p"/> has: the parameter's own, unless an optimizer says otherwise.</summary>
    private protected virtual long[] StateShape(string key, Parameter p) => p.shape;

    /// <summary>Bytes held by the state tensors (moments, codes, absmax), step counts excluded.</summary>
    public long StateBytes => _state.Values.Sum(t => t.numel() * t.ElementSize);

    /// <summary>Builds the optimizer <paramref name="options"/> describe over <paramref name="parameters"/>.</summary>
    public static Optimizer Create(IReadOnlyList<(string Name, Parameter Parameter)> parameters, OptimizerOptions options)
    {
        ArgumentNullException.ThrowIfNull(options);
        options.Validate();
        return options.Kind switch
        {
            OptimizerKind.AdamW => new AdamWOptimizer(parameters, options.LearningRate, options.Beta1, options.Beta2, options.Epsilon, options.EffectiveWeightDecay),
            OptimizerKind.AdamW8bit => new AdamW8bitOptimizer(parameters, options.LearningRate, options.Beta1, options.Beta2, options.Epsilon, options.EffectiveWeightDecay),
            OptimizerKind.Sgd => new SgdOptimizer(parameters, options.LearningRate, options.Momentum, options.Dampening, options.EffectiveWeightDecay, options.Nesterov),
            _ => throw new ArgumentOutOfRangeException(nameof(options), options.Kind, "Use AdamW, AdamW8bit or Sgd."),
        };
    }

    public void Dispose()
    {
        if (_disposed) return;
        _disposed = true;
        foreach (var t in _state.Values) t.Dispose();
        _state.Clear();
        GC.SuppressFinalize(this);
    }
}
