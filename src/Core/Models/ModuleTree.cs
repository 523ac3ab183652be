using System.Reflection;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace LoraPS.Models;

/// <summary>
/// A Linear layer found in a model: its full Hugging Face <c>Path</c> (e.g. <c>model.layers.0.self_attn.q_proj</c>),
/// sizes, and <c>FanInFanOut</c> — true when the checkpoint stores the weight as (in, out) (GPT-2's Conv1D), so the
/// loader transposed it and anything writing it back (PEFT export, merged saves) must transpose again.
/// </summary>
public sealed record LinearLayerInfo(string Path, long InFeatures, long OutFeatures, bool HasBias, bool FanInFanOut, Linear Module);

/// <summary>
/// Path-based access to a module tree: find a submodule by its dotted HF path, replace it, and set parameters.
/// </summary>
/// <remarks>
/// TorchSharp keeps two views of a child: the C# field that <c>forward</c> calls, and the registration that
/// <c>named_modules</c>/<c>parameters</c>/<c>state_dict</c> walk. Replacing a module must update both, which is what
/// <see cref="Replace"/> does.
/// </remarks>
public static class ModuleTree
{
    /// <summary>The submodule at <paramref name="path"/> (dot-separated child names; "" = the root).</summary>
    /// <exception cref="KeyNotFoundException">No such module; the message lists the children where the walk stopped.</exception>
    public static nn.Module Get(nn.Module root, string path)
    {
        if (path.Length == 0) return root;
        var current = root;
        var walked = "";
        foreach (var name in path.Split('.')) {
            var child = current.named_children().FirstOrDefault(c => c.name == name).module;
            if (child is null) {
                var children = string.Join(", ", current.named_children().Select(c => c.name));
                throw new KeyNotFoundException(
                    $"Module '{path}' not found: '{(walked.Length == 0 ? "<root>" : walked)}' has no child '{name}' (children: {(children.Length == 0 ? "none" : children)}).");
            }
            walked = walked.Length == 0 ? name : $"{walked}.{name}";
            current = child;
        }
        return current;
    }

    /// <summary>
    /// Replaces the submodule at <paramref name="path"/> by <c>replacement(old)</c> and returns the new module.
    /// The parent's field (or ModuleList slot) is updated so <c>forward</c> uses the new module, and the registration
    /// is updated in place so named_modules/parameters/state_dict list it under the same name and order.
    /// </summary>
    /// <exception cref="KeyNotFoundException">No module at the path.</exception>
    /// <exception cref="InvalidOperationException">The parent holds the child in a way that cannot take the new type.</exception>
    public static nn.Module Replace(nn.Module root, string path, Func<nn.Module, nn.Module> replacement)
    {
        if (path.Length == 0) throw new ArgumentException("The root module cannot be replaced in place.", nameof(path));
        var split = path.LastIndexOf('.');
        var parent = Get(root, split < 0 ? "" : path[..split]);
        var name = path[(split + 1)..];
        var old = Get(parent, name);
        var created = replacement(old) ?? throw new InvalidOperationException($"The replacement for '{path}' returned null.");
        if (ReferenceEquals(created, old)) return old;

        SetSlot(parent, name, old, created, path);
        Reregister(parent, name, created);
        return created;
    }

    /// <summary>Every <see cref="Linear"/> under <paramref name="root"/>, in registration order.</summary>
    public static IReadOnlyList<LinearLayerInfo> Linears(nn.Module root, IReadOnlySet<string>? fanInFanOut = null) =>
        root.named_modules()
            .Where(m => m.module is Linear)
            .Select(m => {
                var linear = (Linear)m.module;
                return new LinearLayerInfo(m.name, linear.in_features, linear.out_features, linear.bias is not null,
                    fanInFanOut?.Contains(m.name) ?? false, linear);
            })
            .ToList();

    /// <summary>
    /// Sets the parameter <c>module.name</c> (e.g. a Linear's weight) to <paramref name="value"/>, through the module's
    /// public Parameter property so that both its field and its registration change.
    /// </summary>
    public static void SetParameter(nn.Module module, string name, Parameter value)
    {
        var property = module.GetType().GetProperty(name, BindingFlags.Public | BindingFlags.Instance);
        if (property is null || property.PropertyType != typeof(Parameter) || !property.CanWrite)
            throw new InvalidOperationException($"{module.GetType().Name} has no settable Parameter property '{name}'.");
        property.SetValue(module, value);
    }

    private static void SetSlot(nn.Module parent, string name, nn.Module old, nn.Module created, string path)
    {
        // A ModuleList<T> holds its children in a list, not in fields.
        var indexer = parent.GetType().GetProperty("Item", new[] { typeof(int) });
        if (indexer is { CanWrite: true } && int.TryParse(name, out var index)) {
            if (!indexer.PropertyType.IsInstanceOfType(created))
                throw new InvalidOperationException($"'{path}' sits in a list of {indexer.PropertyType.Name}; a {created.GetType().Name} cannot replace it.");
            indexer.SetValue(parent, created, new object[] { index });
            return;
        }
        for (var type = parent.GetType(); type is not null && type != typeof(nn.Module); type = type.BaseType) {
            foreach (var field in type.GetFields(BindingFlags.Instance | BindingFlags.Public | BindingFlags.NonPublic | BindingFlags.DeclaredOnly)) {
                if (!ReferenceEquals(field.GetValue(parent), old)) continue;
                if (!field.FieldType.IsInstanceOfType(created))
                    throw new InvalidOperationException(
                        $"'{path}' is held in field {type.Name}.{field.Name} of type {field.FieldType.Name}; a {created.GetType().Name} cannot replace it. " +
                        "Swappable layers are declared as Module<Tensor, Tensor>.");
                field.SetValue(parent, created);
                return;
            }
        }
        throw new InvalidOperationException($"'{path}' is registered but no field of {parent.GetType().Name} holds it, so forward() would not see a replacement.");
    }

    /// <summary>Swaps the registration of child <paramref name="name"/>, keeping the children's order.</summary>
    private static void Reregister(nn.Module parent, string name, nn.Module created)
    {
        // TorchSharp refuses to register a name twice and removes by registering null, which would move the child to
        // the end. Re-adding it and all later siblings restores the order.
        var children = parent.named_children().ToList();
        var at = children.FindIndex(c => c.name == name);
        for (var i = at; i < children.Count; i++) parent.register_module(children[i].name, null!);
        parent.register_module(name, created);
        for (var i = at + 1; i < children.Count; i++) parent.register_module(children[i].name, children[i].module);
    }
}
