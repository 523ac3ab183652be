using System.Reflection;
using System.Runtime.Loader;
using System.Text.RegularExpressions;
using LoraPS.NotebookRunner.Documents;
using Microsoft.CodeAnalysis.CSharp.Scripting;
using Microsoft.CodeAnalysis.Scripting;

namespace LoraPS.NotebookRunner.Kernels;

/// <summary>
/// The C# kernel: Roslyn scripting, each cell continuing the previous one's state (variables, usings, classes), as
/// .NET Interactive did. LoraPS.Core, TorchSharp and LoraPS.Notebooks are referenced from the start; <c>#r "path"</c>
/// adds a local assembly (relative to the notebook, or by file name from the module folder out/LoraPS). Every
/// reference is an assembly already loaded in the process, so a model made in a pwsh cell is the same type here.
/// </summary>
public sealed partial class CSharpKernel(string workingDirectory, string moduleFolder) : ICellKernel
{
    ScriptState<object>? _state;
    ScriptOptions _options = ScriptOptions.Default
        .WithReferences(typeof(object).Assembly, typeof(Enumerable).Assembly, typeof(Notebooks.Notebook).Assembly,
            typeof(LoraPS.Models.LoraModel).Assembly, typeof(TorchSharp.torch).Assembly)
        .WithImports("System", "System.IO", "System.Linq", "System.Collections.Generic", "System.Threading.Tasks", "LoraPS.Notebooks")
        .WithFilePath("cell.csx")
        .WithEmitDebugInformation(false);

    [GeneratedRegex(@"^[ \t]*#r[ \t]+""(?<path>[^""]+)""[ \t]*$", RegexOptions.Multiline)]
    private static partial Regex ReferenceDirective();

    public string? Run(string code, CellOutputs outputs)
    {
        var stdout = Console.Out;
        var stderr = Console.Error;
        Console.SetOut(new CellStreamWriter(() => outputs, "stdout"));
        Console.SetError(new CellStreamWriter(() => outputs, "stderr"));
        try
        {
            code = AddReferences(code);
            _state = _state is null
                ? CSharpScript.RunAsync(code, _options).GetAwaiter().GetResult()
                : _state.ContinueWithAsync(code, _options).GetAwaiter().GetResult();
            Notebooks.Notebook.CSharpVariables = name => _state?.Variables.LastOrDefault(v => v.Name == name)?.Value;
            // A cell ending in an expression shows its value, as in .NET Interactive.
            if (_state.ReturnValue is { } value) outputs.Display(value);
            return null;
        }
        catch (CompilationErrorException e)
        {
            string message = string.Join("\n", e.Diagnostics.Select(d => d.ToString()));
            outputs.Error("CompilationError", e.Diagnostics.FirstOrDefault()?.GetMessage() ?? e.Message, message);
            return message;
        }
        catch (Exception e) when (e is not OutOfMemoryException)
        {
            var inner = e is TargetInvocationException { InnerException: { } ie } ? ie : e;
            outputs.Error(inner.GetType().Name, inner.Message, inner.ToString());
            return $"{inner.GetType().Name}: {inner.Message}";
        }
        finally
        {
            Console.SetOut(stdout);
            Console.SetError(stderr);
        }
    }

    /// <summary>Replaces each <c>#r "path"</c> line by a blank one (line numbers hold) and references that assembly.</summary>
    string AddReferences(string code) => ReferenceDirective().Replace(code, m =>
    {
        string path = ResolveReference(m.Groups["path"].Value);
        var loaded = AppDomain.CurrentDomain.GetAssemblies().FirstOrDefault(a =>
            !a.IsDynamic && string.Equals(a.GetName().Name, AssemblyName.GetAssemblyName(path).Name, StringComparison.Ordinal));
        var assembly = loaded ?? AssemblyLoadContext.Default.LoadFromAssemblyPath(path);
        _options = _options.AddReferences(assembly);
        return "";
    });

    string ResolveReference(string reference)
    {
        string relative = Path.GetFullPath(reference, workingDirectory);
        if (File.Exists(relative)) return relative;
        string inModule = Path.Combine(moduleFolder, Path.GetFileName(reference));
        if (File.Exists(inModule)) return inModule;
        throw new FileNotFoundException($"#r \"{reference}\": no such assembly next to the notebook ({relative}) or in the module folder ({moduleFolder}). Build with 'dotnet build LoraPS.sln -c Release'.", reference);
    }

    public void Dispose() => Notebooks.Notebook.CSharpVariables = null;
}
